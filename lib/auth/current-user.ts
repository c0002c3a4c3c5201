import { cache } from 'react';
import { getCatalog } from '../catalog/db';
import { auth } from './auth';
import { type Role, isRole } from './roles';

/** Whether VMDEDUP_REQUIRE_2FA=1 asks every admin who signs in with a password for a second factor. */
export function secondFactorRequiredForAdmins(): boolean {
  return process.env.VMDEDUP_REQUIRE_2FA === '1';
}

/** An admin who signed in with a password and has no second factor, on a server with VMDEDUP_REQUIRE_2FA=1. */
export function mustEnrolSecondFactor(user: { role: string; totpEnabledAt: Date | null }, via: 'password' | 'oidc'): boolean {
  return secondFactorRequiredForAdmins() && user.role === 'admin' && via === 'password' && user.totpEnabledAt === null;
}

export type CurrentUser = {
  id: string; username: string; role: Role;
  /** Whether the user has a TOTP second factor on. */
  secondFactor: boolean;
  /**
   * VMDEDUP_REQUIRE_2FA=1 and an admin signed in with a password has no second factor: until they enrol one, every
   * page sends them to /account and every server action and API route refuses them.
   */
  mustEnrolSecondFactor: boolean;
};

/**
 * The signed-in user as the catalog has them now: undefined when not signed in, signed out (next-auth's jwt
 * callback refuses a revoked or expired session), disabled, or when the session predates a password reset or a
 * disable (its sessionVersion is older). Read once per request (the layout and the page both ask).
 */
export const getCurrentUser = cache(async (): Promise<CurrentUser | undefined> => {
  const session = await auth();
  if (!session?.user?.id) return undefined;
  const db = await getCatalog();
  const user = await db.user.findUnique({ where: { id: session.user.id } });
  if (!user || user.disabled || user.sessionVersion !== session.user.sessionVersion || !isRole(user.role)) return undefined;
  const secondFactor = user.totpEnabledAt !== null;
  return { id: user.id, username: user.username, role: user.role, secondFactor, mustEnrolSecondFactor: mustEnrolSecondFactor(user, session.user.via) };
});
