/**
 * The graph drawn on the Graph page, as plain data: which nodes and edges to show for a filter, and where
 * they go (d3-force, run to rest before drawing). Pure TypeScript: the benchmark measures it in Node.
 *
 * Up to AGGREGATE_ABOVE VMs every VM and disk is a node. Above that, VMs that use the same set of common
 * disks become one group node ("37 VMs") and private disks are left out: measured, a 2,000-VM fleet drawn
 * whole is a hairball that takes seconds to lay out, while its groups lay out in milliseconds and still
 * show every common disk and who shares it.
 */
import { type SimulationLinkDatum, type SimulationNodeDatum, forceCollide, forceLink, forceManyBody, forceSimulation, forceX, forceY } from 'd3-force';
import type { GraphData } from '@/lib/services/reports/load-graph';

export const AGGREGATE_ABOVE = 300;

export type GraphNode = SimulationNodeDatum & {
  id: string;
  kind: 'vm' | 'disk' | 'group';
  label: string;
  source: string;
  common?: boolean;
  sizeBytes?: number;
  /** Group nodes: the VMs they stand for. */
  members?: string[];
  radius: number;
  match?: boolean;
};
export type GraphEdge = SimulationLinkDatum<GraphNode> & { kind: 'pointer' | 'parent' };
export type GraphModel = { nodes: GraphNode[]; edges: GraphEdge[]; aggregated: boolean; vmCount: number };

const baseName = (p: string) => p.slice(p.lastIndexOf('/') + 1);

/** Radius by bytes (area ∝ size), so big common disks stand out. */
function diskRadius(bytes: number, maxBytes: number): number {
  return 6 + 18 * Math.sqrt(maxBytes > 0 ? bytes / maxBytes : 0);
}

export function buildGraphModel(data: GraphData, options: { source?: string; search?: string; aggregate?: boolean }): GraphModel {
  const inSource = (s: string) => !options.source || s === options.source;
  const vms = data.vms.filter((vm) => inSource(vm.source));
  const disks = data.disks.filter((d) => inSource(d.source));
  const aggregated = options.aggregate ?? vms.length > AGGREGATE_ABOVE;
  const needle = options.search?.trim().toLowerCase();
  const maxBytes = Math.max(0, ...disks.filter((d) => d.common).map((d) => d.sizeBytes));
  const diskById = new Map(disks.map((d) => [d.id, d]));
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];

  // Disks shown: every disk, or (aggregated) the common disks and the parents they hang from.
  const shownDisks = new Set<string>();
  const show = (id: string | null) => {
    for (let d = id ? diskById.get(id) : undefined; d && !shownDisks.has(d.id); d = d.parentId ? diskById.get(d.parentId) : undefined) shownDisks.add(d.id);
  };
  for (const d of disks) if (!aggregated || d.common) show(d.id);
  for (const id of shownDisks) {
    const d = diskById.get(id)!;
    const label = baseName(d.path);
    nodes.push({ id, kind: 'disk', label, source: d.source, common: d.common, sizeBytes: d.sizeBytes, radius: d.common ? diskRadius(d.sizeBytes, maxBytes) : 5, match: Boolean(needle && label.toLowerCase().includes(needle)) });
    if (d.parentId && shownDisks.has(d.parentId)) edges.push({ source: id, target: d.parentId, kind: 'parent' });
  }

  // What each VM points to among the shown disks: the disk itself, or (a private clone left out) the
  // nearest shown disk up its parent chain, drawn as a parent link.
  const pointersOf = new Map<string, { diskId: string; kind: GraphEdge['kind'] }[]>();
  for (const p of data.pointers) {
    let target = diskById.get(p.diskId);
    let kind: GraphEdge['kind'] = 'pointer';
    for (let depth = 0; target && !shownDisks.has(target.id) && depth < 256; depth++) {
      target = target.parentId ? diskById.get(target.parentId) : undefined;
      kind = 'parent';
    }
    if (target) pointersOf.set(p.vmId, [...(pointersOf.get(p.vmId) ?? []), { diskId: target.id, kind }]);
  }
  if (!aggregated) {
    for (const vm of vms) {
      nodes.push({ id: vm.id, kind: 'vm', label: vm.name, source: vm.source, radius: 5, match: Boolean(needle && vm.name.toLowerCase().includes(needle)) });
      for (const use of pointersOf.get(vm.id) ?? []) edges.push({ source: vm.id, target: use.diskId, kind: use.kind });
    }
  } else {
    // One node per set of common disks used; a searched VM stands on its own.
    const groups = new Map<string, { members: string[]; disks: { diskId: string; kind: GraphEdge['kind'] }[]; source: string }>();
    for (const vm of vms) {
      const used = [...new Map((pointersOf.get(vm.id) ?? []).map((use) => [use.diskId, use])).values()].sort((a, b) => a.diskId.localeCompare(b.diskId));
      if (needle && vm.name.toLowerCase().includes(needle)) {
        nodes.push({ id: vm.id, kind: 'vm', label: vm.name, source: vm.source, radius: 5, match: true });
        for (const use of used) edges.push({ source: vm.id, target: use.diskId, kind: use.kind });
        continue;
      }
      const key = `${vm.source}\u0000${used.map((use) => `${use.diskId}:${use.kind}`).join(',')}`;
      const group = groups.get(key) ?? { members: [], disks: used, source: vm.source };
      group.members.push(vm.name);
      groups.set(key, group);
    }
    let index = 0;
    for (const group of groups.values()) {
      const id = `group-${index++}`;
      const label = group.members.length === 1 ? group.members[0] : `${group.members.length} VMs`;
      nodes.push({ id, kind: group.members.length === 1 ? 'vm' : 'group', label, source: group.source, members: group.members, radius: 4 + 2 * Math.sqrt(group.members.length) });
      for (const use of group.disks) edges.push({ source: id, target: use.diskId, kind: use.kind });
    }
  }
  return { nodes, edges, aggregated, vmCount: vms.length };
}

/** Graphs above this many nodes skip collision (a third of the layout time); their charge keeps nodes apart. */
const COLLIDE_UP_TO = 600;

/** Runs the force layout to rest (no animation: drawing starts from final positions). A faster cooling than
 *  d3's default (135 ticks, not 300) halves the time and the picture is as readable (measured: bench/graph-bench.ts). */
export function layoutGraph(model: GraphModel): void {
  const simulation = forceSimulation<GraphNode>(model.nodes)
    .force('link', forceLink<GraphNode, GraphEdge>(model.edges).id((n) => n.id).distance((e) => (e.kind === 'parent' ? 40 : 30)).strength(0.7))
    .force('charge', forceManyBody<GraphNode>().strength((n) => (n.kind === 'disk' && n.common ? -220 : -40)).theta(0.9))
    .force('x', forceX(0).strength(0.04))
    .force('y', forceY(0).strength(0.04))
    .alphaDecay(0.05)
    .stop();
  if (model.nodes.length <= COLLIDE_UP_TO) simulation.force('collide', forceCollide<GraphNode>((n) => n.radius + 2));
  simulation.tick(Math.ceil(Math.log(simulation.alphaMin()) / Math.log(1 - simulation.alphaDecay())));
}

/** Builds and lays out the graph for a filter; `layoutMs` is shown on the page (and printed by the benchmark). */
export function computeGraph(data: GraphData, options: { source?: string; search?: string; aggregate?: boolean }): { model: GraphModel; layoutMs: number } {
  const started = performance.now();
  const model = buildGraphModel(data, options);
  layoutGraph(model);
  return { model, layoutMs: Math.round(performance.now() - started) };
}
