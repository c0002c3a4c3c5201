import { hashPassword, verifyPassword } from '../auth/passwords';
import { type Role, isRole } from '../auth/roles';
import type { Catalog } from '../db';
import { recordAudit } from './audit';

/** After this many wrong passwords in a row the account is locked for LOCK_MINUTES (an admin's reset unlocks it). */
export const MAX_FAILED_SIGN_INS = 5;
export const LOCK_MINUTES = 15;

export type SignedInUser = { id: string; username: string; role: Role; sessionVersion: number };
export type SignInResult = { ok: true; user: SignedInUser } | { ok: false; reason: 'invalid' | 'locked'; lockedUntil?: Date };

let dummyHash: Promise<string> | undefined;

/**
 * Checks a username and password. Every attempt is audited; unknown users, disabled users and wrong
 * passwords all answer "invalid" after the same hashing work, so the answer does not reveal which.
 */
export async function signInWithPassword(db: Catalog, options: { username: string; password: string; from?: string }): Promise<SignInResult> {
  const username = options.username.trim().toLowerCase();
  const user = await db.user.findUnique({ where: { username } });
  const detail = options.from ? { from: options.from } : {};
  if (!user || !user.passwordHash || user.disabled || !isRole(user.role)) {
    dummyHash ??= hashPassword('not a password of anyone');
    await verifyPassword(await dummyHash, options.password);
    await recordAudit(db, { actor: username, action: 'sign-in.failed', target: username, detail: { ...detail, reason: user?.disabled ? 'disabled' : 'unknown user' } });
    return { ok: false, reason: 'invalid' };
  }
  if (user.lockedUntil && user.lockedUntil > new Date()) {
    await recordAudit(db, { actor: username, action: 'sign-in.failed', target: username, detail: { ...detail, reason: 'locked' } });
    return { ok: false, reason: 'locked', lockedUntil: user.lockedUntil };
  }
  if (!(await verifyPassword(user.passwordHash, options.password))) {
    const failed = user.failedSignIns + 1;
    const lock = failed >= MAX_FAILED_SIGN_INS;
    const lockedUntil = lock ? new Date(Date.now() + LOCK_MINUTES * 60_000) : null;
    await db.user.update({ where: { id: user.id }, data: { failedSignIns: lock ? 0 : failed, lockedUntil } });
    await recordAudit(db, { actor: username, action: lock ? 'user.locked' : 'sign-in.failed', target: username, detail: { ...detail, reason: 'wrong password', failedInARow: failed } });
    return lock ? { ok: false, reason: 'locked', lockedUntil: lockedUntil! } : { ok: false, reason: 'invalid' };
  }
  await db.user.update({ where: { id: user.id }, data: { failedSignIns: 0, lockedUntil: null, lastSignInAt: new Date() } });
  await recordAudit(db, { actor: username, action: 'sign-in', target: username, detail });
  return { ok: true, user: { id: user.id, username: user.username, role: user.role, sessionVersion: user.sessionVersion } };
}

/** OIDC: the identity provider vouched for `email`; it signs in the enabled catalog user with that email. */
export async function signInWithOidc(db: Catalog, options: { email: string; issuer: string }): Promise<SignedInUser | undefined> {
  const email = options.email.trim().toLowerCase();
  const user = await db.user.findUnique({ where: { email } });
  if (!user || user.disabled || !isRole(user.role)) {
    await recordAudit(db, { actor: email, action: 'sign-in.failed', target: email, detail: { via: options.issuer, reason: user ? 'disabled' : 'no user with this email' } });
    return undefined;
  }
  await db.user.update({ where: { id: user.id }, data: { lastSignInAt: new Date() } });
  await recordAudit(db, { actor: user.username, action: 'sign-in', target: user.username, detail: { via: options.issuer } });
  return { id: user.id, username: user.username, role: user.role, sessionVersion: user.sessionVersion };
}
