/**
 * A user's TOTP second factor: enrolled from their own account page (a secret shown once as text, URI and QR
 * code, confirmed with one valid code), turned off by them with their password and a valid code, reset by an
 * admin (the user's sessions end). Only for accounts with a password: single sign-on users get their second
 * factor from the identity provider. Every step is audited.
 */
import { newTotpSecret, sealTotpSecret } from '../../auth/second-factor';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { findUser } from './find-user';

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
