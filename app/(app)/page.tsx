import { Overview } from '@/components/overview/overview';
import { loadOverview } from '@/lib/services/reports/load-overview';
import { requireUser } from '@/lib/auth/require-user';

export const dynamic = 'force-dynamic';

export default async function OverviewPage() {
  // Checked here too: a partial render of this page alone must not skip the layout's check.
  await requireUser();
  return <Overview data={await loadOverview()} />;
}
