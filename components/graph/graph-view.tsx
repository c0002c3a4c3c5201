'use client';

import Link from 'next/link';
import { useEffect, useMemo, useRef, useState } from 'react';
import type { GraphData } from '@/lib/services/reports/load-graph';
import { vmHref } from '@/components/vms/vm-href';
import { formatBytes } from '@/lib/format';
import { type GraphEdge, type GraphNode, computeGraph } from './graph-model';

const COLORS = { vm: '#2563eb', group: '#0d9488', common: '#7c3aed', disk: '#94a3b8', pointer: '#cbd5e1', parent: '#f59e0b', match: '#dc2626' };

/**
 * VMs and disks on a canvas (a DOM node per element does not scale to thousands): pan by dragging, zoom
 * with the wheel, click a node for its details. The list beside it names every common disk in view.
 */
export function GraphView({ data }: { data: GraphData }) {
  const [source, setSource] = useState('');
  const [search, setSearch] = useState('');
  const [aggregate, setAggregate] = useState<'auto' | 'on' | 'off'>('auto');
  const [selected, setSelected] = useState<GraphNode>();
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const view = useRef({ x: 0, y: 0, scale: 1 });
  const { model, layoutMs } = useMemo(
    () => computeGraph(data, { source: source || undefined, search, aggregate: aggregate === 'auto' ? undefined : aggregate === 'on' }),
    [data, source, search, aggregate],
  );
  const byId = useMemo(() => new Map(model.nodes.map((n) => [n.id, n])), [model]);
  const commonDisks = model.nodes.filter((n) => n.kind === 'disk' && n.common).sort((a, b) => (b.sizeBytes ?? 0) - (a.sizeBytes ?? 0));

  const draw = () => {
    const canvas = canvasRef.current;
    if (!canvas) return;
    const ratio = window.devicePixelRatio || 1;
    const { clientWidth: width, clientHeight: height } = canvas;
    if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
    const ctx = canvas.getContext('2d')!;
    const { x, y, scale } = view.current;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.translate(width / 2 + x, height / 2 + y);
    ctx.scale(scale, scale);
    ctx.lineWidth = 1 / scale;
    for (const edge of model.edges as (GraphEdge & { source: GraphNode; target: GraphNode })[]) {
      ctx.strokeStyle = edge.kind === 'parent' ? COLORS.parent : COLORS.pointer;
      ctx.setLineDash(edge.kind === 'parent' ? [4 / scale, 3 / scale] : []);
      ctx.beginPath();
      ctx.moveTo(edge.source.x!, edge.source.y!);
      ctx.lineTo(edge.target.x!, edge.target.y!);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    for (const node of model.nodes) {
      ctx.fillStyle = node.kind === 'disk' ? (node.common ? COLORS.common : COLORS.disk) : node.kind === 'group' ? COLORS.group : COLORS.vm;
      ctx.beginPath();
      if (node.kind === 'disk') ctx.rect(node.x! - node.radius, node.y! - node.radius, node.radius * 2, node.radius * 2);
      else ctx.arc(node.x!, node.y!, node.radius, 0, 2 * Math.PI);
      ctx.fill();
      if (node.match || node === selected) {
        ctx.strokeStyle = node === selected ? '#0f172a' : COLORS.match;
        ctx.lineWidth = 2.5 / scale;
        ctx.stroke();
        ctx.lineWidth = 1 / scale;
      }
    }
    // Labels for the nodes that matter, once they are legible.
    ctx.fillStyle = '#0f172a';
    ctx.font = `${11 / scale}px sans-serif`;
    for (const node of model.nodes) {
      if ((node.kind === 'disk' && node.common) || node.kind === 'group' || node.match || node === selected || (scale > 1.5 && model.nodes.length < 2000)) {
        ctx.fillText(node.label, node.x! + node.radius + 2 / scale, node.y! + 4 / scale);
      }
    }
  };

  // A new layout starts centred and scaled to fit.
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || model.nodes.length === 0) return;
    const xs = model.nodes.map((n) => n.x!);
    const ys = model.nodes.map((n) => n.y!);
    const spanX = Math.max(...xs) - Math.min(...xs) + 80;
    const spanY = Math.max(...ys) - Math.min(...ys) + 80;
    const scale = Math.min(canvas.clientWidth / spanX, canvas.clientHeight / spanY, 2);
    view.current = { x: -((Math.max(...xs) + Math.min(...xs)) / 2) * scale, y: -((Math.max(...ys) + Math.min(...ys)) / 2) * scale, scale };
  }, [model]);
  useEffect(draw);

  const toWorld = (clientX: number, clientY: number) => {
    const rect = canvasRef.current!.getBoundingClientRect();
    const { x, y, scale } = view.current;
    return { x: (clientX - rect.left - rect.width / 2 - x) / scale, y: (clientY - rect.top - rect.height / 2 - y) / scale };
  };
  const drag = useRef<{ x: number; y: number; moved: boolean }>(undefined);

  return (
    <div className="space-y-4">
      <h1 className="text-2xl font-semibold">Graph</h1>
      <div className="flex flex-wrap items-center gap-3 text-sm">
        <label>Source <select aria-label="Source" value={source} onChange={(e) => setSource(e.target.value)} className="rounded border border-slate-300 px-2 py-1">
          <option value="">all sources</option>{data.sources.map((s) => <option key={s} value={s}>{s}</option>)}
        </select></label>
        <input type="search" aria-label="Search the graph" placeholder="Find a VM or disk" value={search} onChange={(e) => setSearch(e.target.value)} className="w-56 rounded border border-slate-300 px-2 py-1" />
        <label>Group VMs <select aria-label="Group VMs" value={aggregate} onChange={(e) => setAggregate(e.target.value as typeof aggregate)} className="rounded border border-slate-300 px-2 py-1">
          <option value="auto">automatically</option><option value="on">by shared disks</option><option value="off">never</option>
        </select></label>
        <span className="text-slate-500" data-testid="graph-summary">{model.vmCount} VMs, {model.nodes.length} nodes, {model.edges.length} edges{model.aggregated ? ' (VMs grouped by the common disks they share)' : ''}; laid out in {layoutMs} ms</span>
      </div>
      <div className="flex gap-4">
        <canvas
          ref={canvasRef}
          aria-label="Graph of VMs and the disks they point to"
          data-testid="graph-canvas"
          className="h-[560px] min-w-0 flex-1 cursor-grab rounded-lg border border-slate-200 bg-white"
          onWheel={(e) => {
            const factor = Math.exp(-e.deltaY * 0.0015);
            const rect = e.currentTarget.getBoundingClientRect();
            const px = e.clientX - rect.left - rect.width / 2;
            const py = e.clientY - rect.top - rect.height / 2;
            const v = view.current;
            view.current = { scale: v.scale * factor, x: px - (px - v.x) * factor, y: py - (py - v.y) * factor };
            draw();
          }}
          onPointerDown={(e) => { drag.current = { x: e.clientX, y: e.clientY, moved: false }; e.currentTarget.setPointerCapture(e.pointerId); }}
          onPointerMove={(e) => {
            if (!drag.current) return;
            const dx = e.clientX - drag.current.x;
            const dy = e.clientY - drag.current.y;
            if (Math.abs(dx) + Math.abs(dy) > 2) drag.current.moved = true;
            drag.current.x = e.clientX;
            drag.current.y = e.clientY;
            view.current = { ...view.current, x: view.current.x + dx, y: view.current.y + dy };
            draw();
          }}
          onPointerUp={(e) => {
            const wasDrag = drag.current?.moved;
            drag.current = undefined;
            if (wasDrag) return;
            const point = toWorld(e.clientX, e.clientY);
            let best: GraphNode | undefined;
            let bestDistance = Infinity;
            for (const node of model.nodes) {
              const distance = Math.hypot(node.x! - point.x, node.y! - point.y) - node.radius;
              if (distance < bestDistance) { best = node; bestDistance = distance; }
            }
            setSelected(bestDistance * view.current.scale < 8 ? best : undefined);
          }}
        />
        <aside className="w-72 shrink-0 space-y-4 text-sm">
          <Details node={selected} model={model} byId={byId} data={data} />
          <section aria-labelledby="graph-common-heading">
            <h2 id="graph-common-heading" className="mb-2 font-semibold">Common disks in view</h2>
            <ul className="max-h-64 space-y-1 overflow-auto" aria-label="Common disks in view">
              {commonDisks.map((disk) => (
                <li key={disk.id}>
                  <button type="button" className="text-left text-violet-800 hover:underline" onClick={() => setSelected(disk)}>{disk.label}</button>
                  <span className="text-slate-500"> · {formatBytes(disk.sizeBytes ?? 0)}</span>
                </li>
              ))}
              {commonDisks.length === 0 && <li className="text-slate-500">none</li>}
            </ul>
          </section>
          <p className="text-xs text-slate-500">
            <span style={{ color: COLORS.vm }}>●</span> VM <span style={{ color: COLORS.group }}>●</span> group of VMs <span style={{ color: COLORS.common }}>■</span> common disk (size by bytes) <span style={{ color: COLORS.disk }}>■</span> private disk; grey line: pointer, dashed orange: parent link.
          </p>
        </aside>
      </div>
    </div>
  );
}

function Details({ node, model, byId, data }: { node?: GraphNode; model: { edges: GraphEdge[] }; byId: Map<string, GraphNode>; data: GraphData }) {
  if (!node) return <p className="text-slate-500">Click a node for its details.</p>;
  const ends = (e: GraphEdge) => [typeof e.source === 'object' ? e.source.id : String(e.source), typeof e.target === 'object' ? e.target.id : String(e.target)];
  const neighbours = model.edges.map(ends).filter(([a, b]) => a === node.id || b === node.id).map(([a, b]) => byId.get(a === node.id ? b : a)!).filter(Boolean);
  if (node.kind === 'disk') {
    const disk = data.disks.find((d) => d.id === node.id)!;
    const users = data.pointers.filter((p) => p.diskId === node.id).map((p) => data.vms.find((vm) => vm.id === p.vmId)!).filter(Boolean);
    return (
      <section aria-label="Selected node" className="rounded border border-slate-200 bg-white p-3">
        <h2 className="font-semibold">{node.label}</h2>
        <p className="break-all font-mono text-xs">{disk.path}</p>
        <p>{disk.format}, {formatBytes(disk.sizeBytes)}{disk.common ? ', common' : ''}</p>
        {disk.parentId && <p>parent: {byId.get(disk.parentId)?.label ?? data.disks.find((d) => d.id === disk.parentId)?.path}</p>}
        {users.length > 0 && <p>pointed to by: {users.map((vm, i) => <span key={vm.id}>{i > 0 && ', '}<Link className="text-blue-700 hover:underline" href={vmHref(vm)}>{vm.name}</Link></span>)}</p>}
      </section>
    );
  }
  const members = node.members ?? [node.label];
  return (
    <section aria-label="Selected node" className="rounded border border-slate-200 bg-white p-3">
      <h2 className="font-semibold">{node.kind === 'group' ? `${members.length} VMs sharing the same disks` : node.label}</h2>
      <p>source {node.source}</p>
      <p>disks: {neighbours.filter((n) => n.kind === 'disk').map((n) => n.label).join(', ') || 'none in view'}</p>
      <ul className="mt-1 max-h-40 overflow-auto">{members.slice(0, 200).map((name) => <li key={name}><Link className="text-blue-700 hover:underline" href={vmHref({ source: node.source, name })}>{name}</Link></li>)}</ul>
    </section>
  );
}
