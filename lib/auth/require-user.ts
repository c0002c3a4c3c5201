import { headers } from 'next/headers';
import { redirect } from 'next/navigation';
import { REQUESTED_PATH_HEADER, safeCallbackPath } from './callback-path';
import { type CurrentUser, getCurrentUser } from './current-user';

/** For pages and layouts: the signed-in user, else a redirect to the sign-in page that comes back here. */
export async function requireUser(): Promise<CurrentUser> {
  const user = await getCurrentUser();
  if (!user) {
    const path = safeCallbackPath((await headers()).get(REQUESTED_PATH_HEADER));
    redirect(path === '/' ? '/sign-in' : `/sign-in?callbackUrl=${encodeURIComponent(path)}`);
  }
  return user;
}
