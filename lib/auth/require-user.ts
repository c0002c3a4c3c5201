import { headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { REQUESTED_PATH_HEADER, safeCallbackPath } from './callback-path';
import { type CurrentUser, getCurrentUser } from './current-user';

/** Where a user sets up their second factor; the one page an admin who must enrol first may see. */
export const ACCOUNT_PATH = '/account';

function isAccountPath(path: string): boolean {
  const pathname = path.split(/[?#]/)[0];
  return pathname === ACCOUNT_PATH || pathname.startsWith(`${ACCOUNT_PATH}/`);
}

/**
 * For pages and layouts: the signed-in user, else a redirect to the sign-in page that comes back here. An admin
 * who must enrol a second factor first (VMDEDUP_REQUIRE_2FA=1) is sent to the account page from every other page.
 */
export async function requireUser(): Promise<CurrentUser> {
  const user = await getCurrentUser();
  // proxy.ts sets this header on every request from the URL asked for (a client-sent value is overwritten).
  const path = safeCallbackPath((await headers()).get(REQUESTED_PATH_HEADER));
  if (!user) redirect(path === '/' ? '/sign-in' : `/sign-in?callbackUrl=${encodeURIComponent(path)}`);
  if (user.mustEnrolSecondFactor && !isAccountPath(path)) redirect(ACCOUNT_PATH);
  return user;
}
