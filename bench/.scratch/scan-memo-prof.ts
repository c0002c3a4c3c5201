import { scanSource } from '../../lib/engine/sources/inventory';
import { ScanMemo } from '../../lib/engine/sources/scan-memo';
const src = { name: 'pool', type: 'libvirt' as const, path: '/work/bench-work/vdi-10000/libvirt' };
const memo = await ScanMemo.load('/tmp/scan-memo.json');
const t0 = performance.now();
await scanSource(src, { memo });
console.log('scan ms', Math.round(performance.now() - t0));
