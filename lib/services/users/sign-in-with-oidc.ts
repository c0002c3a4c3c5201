import { type Role, isRole } from '../../auth/roles';
import type { Catalog } from '../../catalog/db';
import { recordAudit } from '../../catalog/audit';
import { type SignedInUser } from './sign-in-with-password';

export type OidcIdentity = {
  /** The ID token's `iss`, as validated against the configured issuer. */
  issuer: string;
  subject: string;
  email?: unknown;
  /** Only the JSON value `true` counts as verified (not "true", not missing). */
  emailVerified?: unknown;
  from?: string;
};

/**
 * Single sign-on: the identity provider vouched for a subject. The user bound to that (issuer, subject) is signed
 * in, whatever email the provider sends now. A subject seen for the first time is bound to the user with its email,
 * only if the provider says that email is verified and that user is bound to no identity yet; the email is
 * never used again for this subject.
 */
export async function signInWithOidc(db: Catalog, identity: OidcIdentity): Promise<SignedInUser | undefined> {
  const { issuer, subject } = identity;
  const email = typeof identity.email === 'string' ? identity.email.trim().toLowerCase() : undefined;
  const detail = { via: issuer, subject, ...(email ? { email } : {}), ...(identity.from ? { from: identity.from } : {}) };
  const refuse = async (reason: string, target = email ?? subject): Promise<undefined> => {
    await recordAudit(db, { actor: email ?? `${issuer} ${subject}`, action: 'sign-in.failed', target, detail: { ...detail, reason } });
    return undefined;
  };
  const signedIn = async (user: { id: string; username: string; role: string; sessionVersion: number }, bound: boolean) => {
    await recordAudit(db, { actor: user.username, action: 'sign-in', target: user.username, detail: { ...detail, ...(bound ? { boundNow: true } : {}) } });
    return { id: user.id, username: user.username, role: user.role as Role, sessionVersion: user.sessionVersion };
  };
  if (!issuer || !subject) return refuse('the identity provider named no issuer or subject');
  const bound = await db.user.findUnique({ where: { oidcIssuer_oidcSubject: { oidcIssuer: issuer, oidcSubject: subject } } });
  if (bound) {
    if (bound.disabled || !isRole(bound.role)) return refuse('disabled', bound.username);
    await db.user.update({ where: { id: bound.id }, data: { lastSignInAt: new Date() } });
    return signedIn(bound, false);
  }
  // First sign-in of this subject: link by email, on the provider's explicit word that it is verified.
  if (!email) return refuse('the identity provider sent no email for a subject bound to no user');
  if (identity.emailVerified !== true) return refuse(`email not verified by the identity provider (email_verified: ${JSON.stringify(identity.emailVerified ?? null)})`);
  const user = await db.user.findUnique({ where: { email } });
  if (!user) return refuse('no user with this email');
  if (user.disabled || !isRole(user.role)) return refuse('disabled', user.username);
  if (user.oidcSubject !== null) return refuse('the user with this email is bound to another single sign-on identity', user.username);
  try {
    // Bound only if still unbound: two first sign-ins at once cannot both take this user.
    const { count } = await db.user.updateMany({ where: { id: user.id, oidcSubject: null }, data: { oidcIssuer: issuer, oidcSubject: subject, lastSignInAt: new Date() } });
    if (count === 0) return refuse('the user with this email is bound to another single sign-on identity', user.username);
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') return refuse('this subject is bound to another user', user.username);
    throw err;
  }
  await recordAudit(db, { actor: user.username, action: 'user.sso-bound', target: user.username, detail: { issuer, subject, email } });
  return signedIn(user, true);
}
