import { getCatalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { findUserByName } from '../../services/users/find-user-by-name';
import { type Command, type Context, type Subcommand, type Values, EXIT_OK, badInput, readStdin, runSubcommand, validated } from '../command';
import { table } from '../format';

/** The user admin modules, loaded only for `user`: the password hashing addon has no business in a backup's memory. */
async function loadUserAdmin() {
  const [{ generatePassword }, { createUser }, { listUsers }, { resetPassword }, { ZCreateUser, ZResetPassword }] = await Promise.all([
    import('../../auth/passwords'), import('../../services/users/create-user'), import('../../services/users/list-users'),
    import('../../services/users/reset-password'), import('../../validation/users'),
  ]);
  return { generatePassword, createUser, listUsers, resetPassword, ZCreateUser, ZResetPassword, db: await getCatalog() };
}

type UserContext = Context & Awaited<ReturnType<typeof loadUserAdmin>>;

/** The password read from stdin with --password-stdin, else a generated one. */
async function password(values: Values, { generatePassword }: UserContext): Promise<string> {
  return values['password-stdin'] ? (await readStdin()).replace(/\r?\n$/, '') : generatePassword();
}

/** A generated password is shown once; one read from stdin is the caller's already. */
function show(values: Values, name: string, secret: string, { out }: UserContext): void {
  if (!values['password-stdin']) out(`password for ${name} (shown only now): ${secret}`);
}

async function findUser(name: string, { db }: UserContext) {
  const found = await findUserByName(db, { username: name });
  if (!found) throw new AppError('NOT_FOUND', { message: `no user named '${name}' (see 'vmdedup user list')` });
  return found;
}

const subcommands: Record<string, Subcommand<UserContext>> = {
  add: {
    flags: { role: { type: 'string' }, email: { type: 'string' }, 'password-stdin': { type: 'boolean' }, 'sso-only': { type: 'boolean' } },
    positionals: 1,
    async run({ values, positionals }, context) {
      if (values['sso-only'] && values['password-stdin']) throw badInput('--sso-only and --password-stdin exclude each other');
      const secret = values['sso-only'] ? '' : await password(values, context);
      const user = validated(context.ZCreateUser, { username: positionals[0], role: values.role, email: values.email, password: secret });
      await context.createUser(context.db, { actor: 'cli', user });
      context.out(`added user ${user.username} (${user.role})${secret ? '' : `, signing in only by single sign-on as ${user.email}`}`);
      if (secret) show(values, user.username, secret, context);
      return EXIT_OK;
    },
  },
  'set-password': {
    flags: { 'password-stdin': { type: 'boolean' } },
    positionals: 1,
    async run({ values, positionals }, context) {
      const found = await findUser(positionals[0], context);
      const secret = await password(values, context);
      await context.resetPassword(context.db, { actor: 'cli', reset: validated(context.ZResetPassword, { userId: found.id, password: secret }) });
      context.out(`new password set for ${found.username}; the account is unlocked and its sessions have ended`);
      show(values, found.username, secret, context);
      return EXIT_OK;
    },
  },
  list: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { db, listUsers, out, json }) {
      const users = await listUsers(db);
      if (values.json) {
        json({ users: users.map(({ username, email, role, disabled, locked, secondFactor, singleSignOnBound }) => ({ username, email, role, disabled, locked, secondFactor, singleSignOnBound })) });
      } else {
        out(table([['USER', 'ROLE', 'EMAIL', 'STATUS', '2FA', 'SSO'], ...users.map((u) => [
          u.username, u.role, u.email ?? '', u.disabled ? 'disabled' : u.locked ? 'locked' : 'active',
          u.secondFactor ? 'on' : u.hasPassword ? 'off' : '-', u.singleSignOnBound ? 'linked' : u.hasPassword ? '-' : 'only',
        ])]));
      }
      return EXIT_OK;
    },
  },
  'reset-2fa': {
    flags: {},
    positionals: 1,
    async run({ positionals }, context) {
      const found = await findUser(positionals[0], context);
      const { resetSecondFactor } = await import('../../services/users/reset-second-factor');
      const reset = await resetSecondFactor(context.db, { actor: 'cli', userId: found.id });
      context.out(reset.hadSecondFactor
        ? `two-step sign-in of ${reset.username} removed; their sessions have ended, and they sign in with their password alone until they set it up again`
        : `${reset.username} had no two-step sign-in (nothing changed)`);
      return EXIT_OK;
    },
  },
};

export const userCommand: Command = {
  name: 'user',
  help: `  user add <name> --role viewer|operator|approver|admin [--email <e>] [--password-stdin | --sso-only]
  user set-password <name> [--password-stdin]             dashboard users (without --password-stdin a password is generated and shown once)
  user list [--json]                                      users, roles, status, two-step sign-in (2FA), single sign-on link
  user reset-2fa <name>                                   remove a user's two-step sign-in (lost phone); ends their sessions`,
  // The catalog is opened before the subcommand is read, as it always was: `user <typo>` waits for the catalog.
  run: async (args, context) => runSubcommand(subcommands, args, { ...context, ...(await loadUserAdmin()) }, (sub) =>
    `unknown 'user' subcommand '${sub}': use 'user add', 'user set-password', 'user list' or 'user reset-2fa'`),
};
