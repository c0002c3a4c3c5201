import type { Role } from '../../auth/roles';
import type { Catalog } from '../../catalog/db';

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
