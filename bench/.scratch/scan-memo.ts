import { scanSource } from '../../lib/engine/sources/inventory';
import { ScanMemo } from '../../lib/engine/sources/scan-memo';
const src = { name: 'pool', type: 'libvirt' as const, path: '/work/bench-work/vdi-10000/libvirt' };
for (const label of ['no memo', 'filling memo', 'with memo', 'with memo again']) {
  const memo = label === 'no memo' ? undefined : await ScanMemo.load('/tmp/scan-memo.json');
  const t0 = performance.now();
  const inv = await scanSource(src, { memo });
  const t1 = performance.now();
  if (memo) await memo.save('/tmp/scan-memo.json', { prune: true });
  console.log(label, 'vms', inv.vms.length, 'scan ms', Math.round(t1 - t0), 'save ms', Math.round(performance.now() - t1), 'heap MB', Math.round(process.memoryUsage().heapUsed / 1e6));
}
