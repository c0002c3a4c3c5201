import { Overview } from '@/components/overview/overview';
import { loadOverview } from '@/lib/catalog/load-overview';

export const dynamic = 'force-dynamic';

export default async function OverviewPage() {
  return <Overview data={await loadOverview()} />;
}
