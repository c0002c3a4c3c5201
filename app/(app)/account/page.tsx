import { AccountSettings } from '@/components/auth/account-settings';
import { requireUser } from '@/lib/auth/require-user';
import { loadAccount } from '@/lib/catalog/second-factor';
import { getCatalog } from '@/lib/db';

export const dynamic = 'force-dynamic';

export default async function AccountPage() {
  const user = await requireUser();
  const account = await loadAccount(await getCatalog(), { userId: user.id });
  return <AccountSettings account={account} mustEnrol={user.mustEnrolSecondFactor} />;
}
