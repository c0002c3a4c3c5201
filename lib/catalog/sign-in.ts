import { hashPassword, verifyPassword } from '../auth/passwords';
import { type Role, isRole } from '../auth/roles';
import type { Catalog } from '../db';
import { recordAudit } from './audit';

/** After this many wrong passwords in a row the account is locked for LOCK_MINUTES (an admin's reset unlocks it). */
export const MAX_FAILED_SIGN_INS = 5;
export const LOCK_MINUTES = 15;

export type SignedInUser = { id: string; username: string; role: Role; sessionVersion: number };
/** A refusal says nothing about why (unknown name, wrong password, disabled, locked): the audit log does. */
export type SignInResult = { ok: true; user: SignedInUser } | { ok: false; reason: 'invalid' };

let dummyHash: Promise<string> | undefined;

/** Per name and per address: each failure in a row doubles the wait before the next attempt is even checked. */
const THROTTLE_BASE_MS = 200;
const THROTTLE_MAX_MS = 10_000;
const THROTTLE_FORGET_MS = 15 * 60_000;
const recentFailures = new Map<string, { count: number; at: number }>();

function throttleDelay(keys: string[]): number {
  const now = Date.now();
  let count = 0;
  for (const key of keys) {
    const entry = recentFailures.get(key);
    if (entry && now - entry.at < THROTTLE_FORGET_MS) count = Math.max(count, entry.count);
  }
  return count === 0 ? 0 : Math.min(THROTTLE_MAX_MS, THROTTLE_BASE_MS * 2 ** (count - 1));
}

function noteFailure(keys: string[]): void {
  const now = Date.now();
  for (const key of keys) {
    const entry = recentFailures.get(key);
    recentFailures.set(key, { count: entry && now - entry.at < THROTTLE_FORGET_MS ? entry.count + 1 : 1, at: now });
  }
  if (recentFailures.size > 10_000) {
    for (const [key, entry] of recentFailures) if (now - entry.at >= THROTTLE_FORGET_MS) recentFailures.delete(key);
  }
}

/**
 * Checks a username and password. Every attempt is audited with its real reason; every refusal (unknown or
 * disabled user, wrong password, locked account) gives the same answer after the same hashing work. A wrong
 * password counts, and locks the account at the fifth in a row, in one atomic statement (parallel guesses cannot
 * slip past the count), and repeated failures from one address or for one name are slowed down exponentially.
 */
export async function signInWithPassword(db: Catalog, options: { username: string; password: string; from?: string }): Promise<SignInResult> {
  const username = options.username.trim().toLowerCase();
  const keys = [`name:${username}`, ...(options.from ? [`from:${options.from}`] : [])];
  const delay = throttleDelay(keys);
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  const detail = options.from ? { from: options.from } : {};
  const user = await db.user.findUnique({ where: { username } });
  dummyHash ??= hashPassword('not a password of anyone');
  const usable = user && user.passwordHash && !user.disabled && isRole(user.role) ? user : undefined;
  // The hash is always checked, so a locked or unknown account answers in the same time as a wrong password.
  const matches = await verifyPassword(usable?.passwordHash ?? (await dummyHash), options.password);
  const refuse = async (reason: string, action = 'sign-in.failed', extra: object = {}): Promise<SignInResult> => {
    noteFailure(keys);
    await recordAudit(db, { actor: username, action, target: username, detail: { ...detail, reason, ...extra } });
    return { ok: false, reason: 'invalid' };
  };
  if (!usable) return refuse(user?.disabled ? 'disabled' : 'unknown user');
  if (!matches) {
    const [counted] = await db.$queryRaw<{ failedSignIns: number; lockedUntil: Date | null }[]>`
      UPDATE "User" SET
        "failedSignIns" = CASE WHEN "failedSignIns" + 1 >= ${MAX_FAILED_SIGN_INS} THEN 0 ELSE "failedSignIns" + 1 END,
        "lockedUntil" = CASE WHEN "failedSignIns" + 1 >= ${MAX_FAILED_SIGN_INS} THEN now() + make_interval(mins => ${LOCK_MINUTES}) ELSE "lockedUntil" END
      WHERE "id" = ${usable.id} AND ("lockedUntil" IS NULL OR "lockedUntil" <= now())
      RETURNING "failedSignIns", "lockedUntil"`;
    if (!counted) return refuse('locked');
    const locked = counted.lockedUntil !== null && counted.failedSignIns === 0;
    return refuse('wrong password', locked ? 'user.locked' : 'sign-in.failed', locked ? { lockedUntil: counted.lockedUntil } : {});
  }
  // Right password: signed in only if the account is not locked at this very moment.
  const { count } = await db.user.updateMany({
    where: { id: usable.id, OR: [{ lockedUntil: null }, { lockedUntil: { lte: new Date() } }] },
    data: { failedSignIns: 0, lockedUntil: null, lastSignInAt: new Date() },
  });
  if (count === 0) return refuse('locked');
  recentFailures.delete(`name:${username}`);
  await recordAudit(db, { actor: username, action: 'sign-in', target: username, detail });
  return { ok: true, user: { id: usable.id, username: usable.username, role: usable.role as Role, sessionVersion: usable.sessionVersion } };
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
