import { newRepositorySecret } from '../../config';
import { openRepository } from '../../open-repository';
import { AppError } from '../../errors';
import { type Command, type Subcommand, EXIT_OK, badInput, runSubcommand } from '../command';
import { recoveryKeyText } from './repository';

/** The repository for a key command: it must exist and be encrypted (opened with VMDEDUP_PASSWORD_FILE's secret). */
async function encryptedRepository() {
  const repo = await openRepository({ mustExist: true });
  if (!repo.encrypted) throw new AppError('BAD_INPUT', { message: `repository ${repo.store.location} is not encrypted: it has no keys ('vmdedup repository init --encrypt' creates an encrypted one)` });
  return repo;
}

const subcommands: Record<string, Subcommand> = {
  list: {
    flags: { json: { type: 'boolean' } },
    async run({ values }, { out, json }) {
      const repo = await encryptedRepository();
      const { slots, damaged } = await repo.keySlots();
      if (values.json) {
        json({ slots: slots.map(({ id, kind, label, createdAt, kdf }) => ({ id, kind, label: label ?? null, createdAt, kdf: kdf.algorithm === 'scrypt' ? { algorithm: kdf.algorithm, N: kdf.N, r: kdf.r, p: kdf.p } : { algorithm: kdf.algorithm } })), damaged });
        return EXIT_OK;
      }
      for (const slot of slots) {
        const kdf = slot.kdf.algorithm === 'scrypt' ? `scrypt N=${slot.kdf.N} r=${slot.kdf.r} p=${slot.kdf.p}` : slot.kdf.algorithm;
        out(`${slot.id}  ${slot.kind.padEnd(10)}  ${slot.createdAt}  ${kdf}${slot.label ? `  ${slot.label}` : ''}`);
      }
      for (const problem of damaged) out(`damaged: ${problem}`);
      return EXIT_OK;
    },
  },
  add: {
    flags: { recovery: { type: 'boolean' }, label: { type: 'string' }, 'password-file': { type: 'string' } },
    async run({ values }, { out }) {
      const label = typeof values.label === 'string' ? values.label : undefined;
      if (label !== undefined && (label.length > 100 || /[\u0000-\u001f]/.test(label))) throw badInput('--label: at most 100 characters, no control characters');
      if (values.recovery && values['password-file']) throw badInput('--recovery makes a new recovery key: it takes no --password-file');
      // The new passphrase is read before the repository is opened: a missing one costs no unlock.
      const secret = values.recovery ? undefined : newRepositorySecret(values['password-file'] as string | undefined);
      if (!values.recovery && !secret) throw badInput('the new passphrase: give --password-file <file>, or set VMDEDUP_NEW_PASSWORD_FILE (or VMDEDUP_NEW_PASSWORD); the current one stays in VMDEDUP_PASSWORD_FILE');
      const repo = await encryptedRepository();
      const added = secret ? await repo.addKeySlot({ kind: 'passphrase', secret, label }) : await repo.addKeySlot({ kind: 'recovery', label });
      out(`added key slot ${added.slot.id} (${added.slot.kind}) to repository ${repo.store.location}`);
      if (added.recoveryKey) out(recoveryKeyText(added.recoveryKey));
      return EXIT_OK;
    },
  },
  remove: {
    flags: {},
    positionals: 1,
    async run({ positionals }, { out }) {
      const id = positionals[0];
      if (!/^k-[0-9a-f]{8}$/.test(id)) throw badInput(`'${id}' is not a key slot id (k- and 8 hex digits: see 'vmdedup key list')`);
      const repo = await encryptedRepository();
      await repo.removeKeySlot(id);
      out(`removed key slot ${id} from repository ${repo.store.location}: its passphrase or recovery key no longer opens it (a copy of the slot's file kept elsewhere still would: the master key is not changed)`);
      return EXIT_OK;
    },
  },
};

export const keyCommand: Command = {
  name: 'key',
  help: `  key list [--json]                                       the key slots of an encrypted repository (passphrases, recovery keys)
  key add [--password-file <file>] [--label <text>]       add a passphrase (from the file, or VMDEDUP_NEW_PASSWORD_FILE); the
                                                          repository is opened with the current one (VMDEDUP_PASSWORD_FILE)
  key add --recovery [--label <text>]                     add a new recovery key, printed once
  key remove <slot id>                                    remove a key slot (never the last one)`,
  run: (args, context) => runSubcommand(subcommands, args, context, (sub) => `unknown 'key' subcommand '${sub}': use 'key list', 'key add' or 'key remove'`),
};
