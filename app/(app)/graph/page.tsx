import { GraphLoader } from '@/components/graph/graph-loader';
import { loadGraph } from '@/lib/services/reports/load-graph';
import { getCatalog } from '@/lib/catalog/db';
import { requireUser } from '@/lib/auth/require-user';

export default async function GraphPage() {
  // Checked here too: a partial render of this page alone must not skip the layout's check.
  await requireUser();
  return <GraphLoader data={await loadGraph(await getCatalog())} />;
}
