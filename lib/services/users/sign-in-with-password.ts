import { hashPassword, verifyPassword } from '../../auth/passwords';
import { type Role, isRole } from '../../auth/roles';
import { acceptedTotpStep, openTotpSecret } from '../../auth/second-factor';
import type { Catalog } from '../../catalog/db';
import { recordAudit } from '../../catalog/audit';
import { countFailure } from './count-failure';

export type SignedInUser = { id: string; username: string; role: Role; sessionVersion: number };

/** A refusal says nothing about why (unknown name, wrong password or code, disabled, locked): the audit log does. */
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

/** Checked when no real secret is at hand, so every attempt does the same TOTP work. */
const DUMMY_TOTP_SECRET = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';

/**
 * Checks a username, password and, for a user with a second factor, the code from their authenticator app (all
 * on one form: a refusal never tells which of them was wrong). Every attempt is audited with its real reason;
 * every refusal (unknown or disabled user, wrong password, wrong, missing or replayed code, locked account) gives
 * the same answer after the same work: the password hash and a TOTP check always run. A wrong password or code
 * counts toward the lock (five in a row), and repeated failures from one address or for one name are slowed down
 * exponentially. A code is accepted once: its time step is remembered, atomically with the sign-in.
 */
export async function signInWithPassword(db: Catalog, options: { username: string; password: string; code?: string; from?: string }): Promise<SignInResult> {
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
  const needsCode = Boolean(usable?.totpEnabledAt && usable.totpSecret);
  const secret = needsCode ? openTotpSecret(usable!.totpSecret!, usable!.id) : undefined;
  const step = await acceptedTotpStep({ secret: secret ?? DUMMY_TOTP_SECRET, code: options.code ?? '', afterStep: usable?.totpLastStep });
  const refuse = async (reason: string, action = 'sign-in.failed', extra: object = {}): Promise<SignInResult> => {
    noteFailure(keys);
    await recordAudit(db, { actor: username, action, target: username, detail: { ...detail, reason, ...extra } });
    return { ok: false, reason: 'invalid' };
  };
  const refuseCounted = async (reason: string): Promise<SignInResult> => {
    const counted = await countFailure(db, usable!.id);
    if (!counted) return refuse('locked');
    return refuse(reason, counted.locked ? 'user.locked' : 'sign-in.failed', counted.locked ? { lockedUntil: counted.lockedUntil } : {});
  };
  const codeRefusal = async () => {
    if (!options.code?.trim()) return 'no code';
    // Said only in the audit log: a code that was good once, presented again.
    const replayed = await acceptedTotpStep({ secret: secret!, code: options.code });
    return replayed !== undefined ? 'code already used' : 'wrong code';
  };
  if (!usable) return refuse(user?.disabled ? 'disabled' : 'unknown user');
  if (!matches) return refuseCounted('wrong password');
  // A sealed secret that does not open (AUTH_SECRET changed): nobody can sign in as this user until a reset.
  if (needsCode && secret === undefined) return refuse('second-factor secret cannot be opened (was AUTH_SECRET changed? vmdedup user reset-2fa)');
  if (needsCode && step === undefined) return refuseCounted(await codeRefusal());
  // Right password (and code): signed in only if the account is not locked at this very moment, and only if no
  // other sign-in took this code's time step first.
  const { count } = await db.user.updateMany({
    where: {
      id: usable.id,
      AND: [
        { OR: [{ lockedUntil: null }, { lockedUntil: { lte: new Date() } }] },
        ...(needsCode ? [{ OR: [{ totpLastStep: null }, { totpLastStep: { lt: step! } }] }] : []),
      ],
    },
    data: { failedSignIns: 0, lockedUntil: null, lastSignInAt: new Date(), ...(needsCode ? { totpLastStep: step } : {}) },
  });
  if (count === 0) {
    const now = await db.user.findUnique({ where: { id: usable.id }, select: { lockedUntil: true } });
    if (now?.lockedUntil && now.lockedUntil > new Date()) return refuse('locked');
    return refuseCounted('code already used');
  }
  // A success forgets the failures for this name and this address (someone at a shared address got in).
  for (const key of keys) recentFailures.delete(key);
  await recordAudit(db, { actor: username, action: 'sign-in', target: username, detail: { ...detail, ...(needsCode ? { secondFactor: 'totp' } : {}) } });
  return { ok: true, user: { id: usable.id, username: usable.username, role: usable.role as Role, sessionVersion: usable.sessionVersion } };
}
