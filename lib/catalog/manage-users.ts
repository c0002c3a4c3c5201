import { generatePassword, hashPassword } from '../auth/passwords';
import type { Role } from '../auth/roles';
import type { Catalog } from '../db';
import { AppError } from '../errors';
import type { TCreateUser, TResetPassword, TUpdateUser } from '../validation/users';
import { recordAudit } from './audit';

export type UserRow = {
  id: string; username: string; email: string | null; role: Role; disabled: boolean;
  /** False for a user who signs in only through single sign-on. */
  hasPassword: boolean; locked: boolean; createdAt: Date; lastSignInAt: Date | null;
  /** A TOTP second factor is on. */
  secondFactor: boolean;
  /** Bound to a single sign-on identity (by its first sign-in). */
  singleSignOnBound: boolean;
};

export async function listUsers(db: Catalog): Promise<UserRow[]> {
  const users = await db.user.findMany({ orderBy: { username: 'asc' } });
  const now = new Date();
  return users.map((u) => ({
    id: u.id, username: u.username, email: u.email, role: u.role as Role, disabled: u.disabled, hasPassword: u.passwordHash !== null,
    locked: Boolean(u.lockedUntil && u.lockedUntil > now), createdAt: u.createdAt, lastSignInAt: u.lastSignInAt,
    secondFactor: u.totpEnabledAt !== null, singleSignOnBound: u.oidcSubject !== null,
  }));
}

export async function createUser(db: Catalog, options: { actor: string; user: TCreateUser }): Promise<{ id: string }> {
  const { username, email, role, password } = options.user;
  const passwordHash = password ? await hashPassword(password) : null;
  try {
    return await db.$transaction(async (tx) => {
      const created = await tx.user.create({ data: { username, email: email ?? null, role, passwordHash }, select: { id: true } });
      await recordAudit(tx, { actor: options.actor, action: 'user.create', target: username, detail: { role, email: email ?? null, singleSignOnOnly: !password } });
      return created;
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') throw new AppError('CONFLICT', { message: `a user named '${username}'${email ? ` or with email ${email}` : ''} already exists` });
    throw err;
  }
}

/**
 * Changes a role or an email, or disables/enables a user. The last enabled admin cannot be demoted or
 * disabled; a user without a password keeps their email (their only way in). A new or removed email also
 * unbinds the user's single sign-on identity: the next single sign-on links by the new email again.
 */
export async function updateUser(db: Catalog, options: { actor: string; change: TUpdateUser }): Promise<void> {
  const { userId, role, disabled, email } = options.change;
  try {
    await db.$transaction(async (tx) => {
      // Serialises admin changes: two admins demoting each other at once cannot leave nobody in charge.
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(7466)`;
      const user = await tx.user.findUnique({ where: { id: userId } });
      if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
      const losesAdmin = user.role === 'admin' && !user.disabled && ((role && role !== 'admin') || disabled === true);
      if (losesAdmin && (await tx.user.count({ where: { role: 'admin', disabled: false } })) <= 1) {
        throw new AppError('CONFLICT', { message: `${user.username} is the last enabled admin: make someone else admin first` });
      }
      if (email === null && user.passwordHash === null) {
        throw new AppError('CONFLICT', { message: `${user.username} has no password and signs in only by single sign-on: set a password before removing the email` });
      }
      const emailChanged = email !== undefined && email !== user.email;
      const unbinds = emailChanged && user.oidcSubject !== null;
      await tx.user.update({
        where: { id: userId },
        // Disabling ends the user's sessions at once.
        data: {
          role, disabled, email, ...(disabled === true && !user.disabled ? { sessionVersion: { increment: 1 } } : {}),
          ...(unbinds ? { oidcIssuer: null, oidcSubject: null } : {}),
        },
      });
      const changes = {
        ...(role && role !== user.role ? { role: [user.role, role] } : {}),
        ...(disabled !== undefined && disabled !== user.disabled ? { disabled: [user.disabled, disabled] } : {}),
        ...(emailChanged ? { email: [user.email, email] } : {}),
        ...(unbinds ? { singleSignOnUnbound: { issuer: user.oidcIssuer, subject: user.oidcSubject } } : {}),
      };
      await recordAudit(tx, { actor: options.actor, action: 'user.update', target: user.username, detail: changes });
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') throw new AppError('CONFLICT', { message: `another user has the email ${email}` });
    throw err;
  }
}

/** Sets a new password: unlocks the account and ends the user's existing sessions. */
export async function resetPassword(db: Catalog, options: { actor: string; reset: TResetPassword }): Promise<void> {
  const passwordHash = await hashPassword(options.reset.password);
  await db.$transaction(async (tx) => {
    const user = await tx.user.findUnique({ where: { id: options.reset.userId } });
    if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
    await tx.user.update({ where: { id: user.id }, data: { passwordHash, failedSignIns: 0, lockedUntil: null, sessionVersion: { increment: 1 } } });
    await recordAudit(tx, { actor: options.actor, action: 'user.reset-password', target: user.username });
  });
}

/**
 * First start: with no user at all, creates `admin` with `password` (VMDEDUP_ADMIN_PASSWORD), else a
 * generated one that the caller prints once. Returns undefined when users exist.
 */
export async function ensureFirstAdmin(db: Catalog, options: { password?: string }): Promise<{ username: string; password: string; generated: boolean } | undefined> {
  if ((await db.user.count()) > 0) return undefined;
  const password = options.password || generatePassword();
  try {
    await db.$transaction(async (tx) => {
      await tx.user.create({ data: { username: 'admin', role: 'admin', passwordHash: await hashPassword(password) } });
      await recordAudit(tx, { actor: 'system', action: 'user.create', target: 'admin', detail: { role: 'admin', firstStart: true } });
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') return undefined; // another process created it first
    throw err;
  }
  return { username: 'admin', password, generated: !options.password };
}
