import { NotAllowed } from '@/components/layout/not-allowed';
import { getCurrentUser } from '@/lib/auth/current-user';

/** What a page's forbidden() shows (with HTTP 403), inside the app's layout. */
export default async function Forbidden() {
  return <NotAllowed role={(await getCurrentUser())?.role} />;
}
