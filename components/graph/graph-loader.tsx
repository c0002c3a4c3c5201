'use client';

import dynamic from 'next/dynamic';
import type { GraphData } from '@/lib/services/reports/load-graph';

// The layout runs in the browser only: the server would compute it for nothing (and time it differently).
const GraphView = dynamic(() => import('./graph-view').then((m) => m.GraphView), {
  ssr: false,
  loading: () => <p className="text-slate-500">Laying out the graph…</p>,
});

export function GraphLoader({ data }: { data: GraphData }) {
  return <GraphView data={data} />;
}
