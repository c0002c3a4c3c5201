import { scanSource } from '/work/main/lib/engine/sources/inventory';
const t0 = performance.now();
const inv = await scanSource({ name: 'pool', type: 'libvirt', path: '/work/bench-work/vdi-10000/libvirt' });
console.log('vms', inv.vms.length, 'disks', inv.disks.size, 'ms', Math.round(performance.now() - t0));
const t1 = performance.now();
await scanSource({ name: 'pool', type: 'libvirt', path: '/work/bench-work/vdi-10000/libvirt' });
console.log('again ms', Math.round(performance.now() - t1));
