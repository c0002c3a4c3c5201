/**
 * A user's TOTP second factor: enrolled from their own account page (a secret shown once as text, URI and QR
 * code, confirmed with one valid code), turned off by them with their password and a valid code, reset by an
 * admin (the user's sessions end). Only for accounts with a password: single sign-on users get their second
 * factor from the identity provider. Every step is audited.
 */
import { verifyPassword } from '../auth/passwords';
import { acceptedTotpStep, newTotpSecret, openTotpSecret, sealTotpSecret, totpEnrolment } from '../auth/second-factor';
import type { Catalog } from '../db';
import { AppError } from '../errors';
import { recordAudit } from './audit';
import { countFailure } from './sign-in';

export type SecondFactorState =
  | { state: 'off' }
  | { state: 'enrolling'; secret: string; uri: string; qrCode: string }
  | { state: 'on'; since: Date };

export type Account = {
  username: string; role: string; hasPassword: boolean;
  secondFactor: SecondFactorState;
  /** The single sign-on identity this user is bound to, if any. */
  singleSignOn: { issuer: string; subject: string } | null;
};

async function findUser(db: Catalog, userId: string) {
  const user = await db.user.findUnique({ where: { id: userId } });
  if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
  return user;
}

export async function loadAccount(db: Catalog, options: { userId: string }): Promise<Account> {
  const user = await findUser(db, options.userId);
  let secondFactor: SecondFactorState = { state: 'off' };
  if (user.totpEnabledAt) secondFactor = { state: 'on', since: user.totpEnabledAt };
  else if (user.totpSecret) {
    // A secret sealed under another AUTH_SECRET cannot be shown: the user starts again.
    const secret = openTotpSecret(user.totpSecret, user.id);
    if (secret) secondFactor = { state: 'enrolling', secret, ...(await totpEnrolment({ secret, username: user.username })) };
  }
  return {
    username: user.username, role: user.role, hasPassword: user.passwordHash !== null, secondFactor,
    singleSignOn: user.oidcIssuer && user.oidcSubject ? { issuer: user.oidcIssuer, subject: user.oidcSubject } : null,
  };
}

/** A new secret to enrol (replacing one being enrolled); refused while a second factor is on. */
export async function beginSecondFactorEnrolment(db: Catalog, options: { userId: string }): Promise<void> {
  const user = await findUser(db, options.userId);
  if (user.passwordHash === null) {
    throw new AppError('CONFLICT', { message: `${user.username} signs in only by single sign-on: the identity provider gives the second factor` });
  }
  const sealed = sealTotpSecret(newTotpSecret(), user.id);
  const { count } = await db.user.updateMany({ where: { id: user.id, totpEnabledAt: null }, data: { totpSecret: sealed, totpLastStep: null } });
  if (count === 0) throw new AppError('CONFLICT', { message: 'two-step sign-in is on already: turn it off first to set up another authenticator' });
}

/** The first valid code turns the second factor on; that code's time step counts as used. */
export async function confirmSecondFactor(db: Catalog, options: { userId: string; code: string }): Promise<void> {
  const user = await findUser(db, options.userId);
  if (user.totpEnabledAt) throw new AppError('CONFLICT', { message: 'two-step sign-in is on already' });
  const secret = user.totpSecret ? openTotpSecret(user.totpSecret, user.id) : undefined;
  if (!secret) throw new AppError('CONFLICT', { message: 'start the set-up again: no secret is being enrolled' });
  const step = await acceptedTotpStep({ secret, code: options.code });
  if (step === undefined) {
    await recordAudit(db, { actor: user.username, action: 'user.2fa-enrol-failed', target: user.username, detail: { reason: 'wrong code' } });
    throw new AppError('BAD_INPUT', { message: 'That code does not match. Check that the phone’s clock is right and type the code shown now.' });
  }
  // Only the secret that was checked: a set-up started again in another tab meanwhile has replaced it.
  const { count } = await db.user.updateMany({
    where: { id: user.id, totpEnabledAt: null, totpSecret: user.totpSecret },
    data: { totpEnabledAt: new Date(), totpLastStep: step },
  });
  if (count === 0) throw new AppError('CONFLICT', { message: 'the set-up was started again meanwhile: use the newest secret' });
  await recordAudit(db, { actor: user.username, action: 'user.2fa-enrol', target: user.username });
}

/**
 * The user turns their second factor off with their password and a valid code (a stolen session alone cannot);
 * a wrong one counts toward the same lock as a wrong password at sign-in.
 */
export async function disableSecondFactor(db: Catalog, options: { userId: string; password: string; code: string }): Promise<void> {
  const user = await findUser(db, options.userId);
  if (!user.totpEnabledAt || !user.totpSecret) throw new AppError('CONFLICT', { message: 'two-step sign-in is not on' });
  const passwordMatches = user.passwordHash !== null && (await verifyPassword(user.passwordHash, options.password));
  const secret = openTotpSecret(user.totpSecret, user.id);
  const step = secret ? await acceptedTotpStep({ secret, code: options.code, afterStep: user.totpLastStep }) : undefined;
  if (!passwordMatches || step === undefined) {
    const counted = await countFailure(db, user.id);
    await recordAudit(db, {
      actor: user.username, action: 'user.2fa-disable-failed', target: user.username,
      detail: { reason: !passwordMatches ? 'wrong password' : 'wrong code', ...(counted?.locked ? { locked: true, lockedUntil: counted.lockedUntil } : {}) },
    });
    throw new AppError('BAD_INPUT', { message: 'Wrong password or code: two-step sign-in stays on.' });
  }
  await db.user.update({ where: { id: user.id }, data: { totpSecret: null, totpEnabledAt: null, totpLastStep: null } });
  await recordAudit(db, { actor: user.username, action: 'user.2fa-disable', target: user.username });
}

/**
 * An admin (or the CLI) removes a user's second factor, e.g. for a lost phone: the user signs in with their
 * password alone and may enrol again; their sessions end, in case the phone went with one.
 */
export async function resetSecondFactor(db: Catalog, options: { actor: string; userId: string }): Promise<{ username: string; hadSecondFactor: boolean }> {
  return db.$transaction(async (tx) => {
    const user = await tx.user.findUnique({ where: { id: options.userId } });
    if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
    const hadSecondFactor = user.totpEnabledAt !== null;
    await tx.user.update({
      where: { id: user.id },
      data: { totpSecret: null, totpEnabledAt: null, totpLastStep: null, ...(hadSecondFactor ? { sessionVersion: { increment: 1 } } : {}) },
    });
    await recordAudit(tx, { actor: options.actor, action: 'user.2fa-reset', target: user.username, detail: { hadSecondFactor } });
    return { username: user.username, hadSecondFactor };
  });
}
