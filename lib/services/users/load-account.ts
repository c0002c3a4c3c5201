import { openTotpSecret, totpEnrolment } from '../../auth/second-factor';
import type { Catalog } from '../../catalog/db';
import { findUser } from './find-user';

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
