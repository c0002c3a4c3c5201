import { cache } from 'react';
import { getCatalog } from '../db';
import { auth } from './auth';
import { type Role, isRole } from './roles';

export type CurrentUser = { id: string; username: string; role: Role };

/**
 * The signed-in user as the catalog has them now: undefined when not signed in, disabled, or when the
 * session predates a password reset or a disable (its sessionVersion is older). Read once per request (the
 * layout and the page both ask).
 */
export const getCurrentUser = cache(async (): Promise<CurrentUser | undefined> => {
  const session = await auth();
  if (!session?.user?.id) return undefined;
  const db = await getCatalog();
  const user = await db.user.findUnique({ where: { id: session.user.id } });
  if (!user || user.disabled || user.sessionVersion !== session.user.sessionVersion || !isRole(user.role)) return undefined;
  return { id: user.id, username: user.username, role: user.role };
});
