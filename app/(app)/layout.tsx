import type { ReactNode } from 'react';
import { AppHeader } from '@/components/layout/app-header';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { countPendingApprovals } from '@/lib/services/restores/count-pending-approvals';
import { getCatalog } from '@/lib/catalog/db';

export const dynamic = 'force-dynamic';

export default async function AppLayout({ children }: { children: ReactNode }) {
  const user = await requireUser();
  // Approvers see how many restores wait for them.
  const pendingApprovals = can(user.role, 'approve-restore') ? await countPendingApprovals(await getCatalog()) : undefined;
  return (
    <>
      <AppHeader user={user} pendingApprovals={pendingApprovals} />
      <main className="mx-auto max-w-6xl px-6 py-8">{children}</main>
    </>
  );
}
