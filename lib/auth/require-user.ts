import { redirect } from 'next/navigation';
import { type CurrentUser, getCurrentUser } from './current-user';

/** For pages and layouts: the signed-in user, else a redirect to the sign-in page. */
export async function requireUser(): Promise<CurrentUser> {
  const user = await getCurrentUser();
  if (!user) redirect('/sign-in');
  return user;
}
