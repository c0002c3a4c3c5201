import { AccountSettings } from '@/components/auth/account-settings';
import { requireUser } from '@/lib/auth/require-user';
import { loadAccount } from '@/lib/services/users/load-account';
import { getCatalog } from '@/lib/catalog/db';

export const dynamic = 'force-dynamic';

export default async function AccountPage() {
  const user = await requireUser();
  const account = await loadAccount(await getCatalog(), { userId: user.id });
  return <AccountSettings account={account} mustEnrol={user.mustEnrolSecondFactor} />;
}
