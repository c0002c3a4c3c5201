/**
 * Graph page benchmark: builds and lays out the VM/disk graph of synthetic fleets (2,000 and 5,000 VMs on
 * 20 linked-clone bases, 10 shared configuration disks and a private data disk each), drawn whole and with
 * VMs grouped by the common disks they share. Prints milliseconds (median of 3) and node counts.
 */
import { computeGraph } from '../components/graph/graph-model';
import type { GraphData } from '../lib/services/reports/load-graph';

function syntheticFleet(vmCount: number): GraphData {
  const data: GraphData = { sources: ['dc1'], vms: [], disks: [], pointers: [] };
  const disk = (id: string, path: string, common: boolean, sizeBytes: number, parentId: string | null = null) => {
    data.disks.push({ id, path, source: 'dc1', format: path.endsWith('.qcow2') ? 'qcow2' : 'raw', common, sizeBytes, parentId });
  };
  for (let b = 0; b < 20; b++) disk(`base${b}`, `/images/base-${b}.qcow2`, true, 20 * 2 ** 30);
  for (let c = 0; c < 10; c++) disk(`config${c}`, `/images/config-${c}.raw`, true, 2 ** 28);
  for (let v = 0; v < vmCount; v++) {
    const vm = `vm${v}`;
    data.vms.push({ id: vm, name: vm, source: 'dc1' });
    disk(`${vm}-root`, `/images/${vm}.qcow2`, false, 2 ** 30, `base${v % 20}`);
    disk(`${vm}-data`, `/images/${vm}-data.raw`, false, 4 * 2 ** 30);
    for (const diskId of [`${vm}-root`, `${vm}-data`, `config${v % 10}`]) data.pointers.push({ vmId: vm, diskId, via: 'attached' });
  }
  return data;
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

console.log('graph layout (components/graph/graph-model.ts), median of 3:');
for (const vms of [300, 2000, 5000]) {
  const data = syntheticFleet(vms);
  for (const aggregate of [false, true]) {
    if (!aggregate && vms > 2000) continue; // drawn whole, 5,000 VMs take over ten seconds: not a usable page
    const runs = [0, 1, 2].map(() => computeGraph(data, { aggregate }));
    const { model } = runs[0];
    console.log(`  ${String(vms).padStart(5)} VMs ${aggregate ? 'grouped' : 'whole  '}: ${String(model.nodes.length).padStart(5)} nodes, ${String(model.edges.length).padStart(5)} edges, ${String(median(runs.map((r) => r.layoutMs))).padStart(6)} ms`);
  }
}
