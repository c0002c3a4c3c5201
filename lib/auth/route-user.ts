import { NextResponse } from 'next/server';
import { type CurrentUser, getCurrentUser } from './current-user';
import { type Permission, can } from './roles';

/** For route handlers: the signed-in user allowed `permission`, else the response to send (401 or 403). */
export async function routeUser(permission: Permission): Promise<{ user: CurrentUser; refused?: undefined } | { refused: NextResponse }> {
  const user = await getCurrentUser();
  if (!user) return { refused: NextResponse.json({ error: 'sign in first' }, { status: 401 }) };
  if (user.mustEnrolSecondFactor) return { refused: NextResponse.json({ error: 'set up two-step sign-in first (your account page)' }, { status: 403 }) };
  if (!can(user.role, permission)) return { refused: NextResponse.json({ error: 'not allowed' }, { status: 403 }) };
  return { user };
}
