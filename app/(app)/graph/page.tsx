import { GraphLoader } from '@/components/graph/graph-loader';
import { loadGraph } from '@/lib/catalog/load-graph';
import { getCatalog } from '@/lib/db';

export default async function GraphPage() {
  return <GraphLoader data={await loadGraph(await getCatalog())} />;
}
