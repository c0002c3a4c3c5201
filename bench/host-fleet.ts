/**
 * The benchmark's second fleet, shaped like real hosts rather than like the demo: three qcow2 bases of 1 GiB, three
 * linked clones of each with writes of their own (scattered, of different sizes), one VM that is a *full raw clone*
 * of a base (its guest data equal to the base's, at guest offsets rather than at the qcow2's host offsets) with a few
 * writes of its own, a configuration disk every VM shares, private raw data disks of different sizes.
 * Deterministic semi-compressible data (lib/demo/fleet.ts's pattern).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { libvirtDomain, overwrite, qemuImg, tool, writeData } from '../lib/demo/fleet';

const MiB = 1024 * 1024;

export type HostFleet = { libvirtDir: string; vms: string[]; restoreVm: string; restoreFiles: string[]; changedFiles: string[] };

export async function buildHostFleet(dir: string, scale: number, seed = 4242): Promise<HostFleet> {
  const libvirtDir = path.join(dir, 'libvirt');
  const images = path.join(libvirtDir, 'images');
  await fs.mkdir(images, { recursive: true });
  const scratch = path.join(dir, '.scratch');
  await fs.mkdir(scratch, { recursive: true });
  const mib = (n: number) => Math.max(1, Math.round(n * scale)) * MiB;
  const baseBytes = mib(1024);
  await writeData(path.join(images, 'site-config.raw'), mib(64), seed * 7);
  const vms: string[] = [];
  const define = async (name: string, system: { file: string; format: 'qcow2' | 'raw' }, dataBytes: number) => {
    await writeData(path.join(images, `${name}-data.raw`), dataBytes, seed * 13 + vms.length);
    vms.push(name);
    await fs.writeFile(path.join(libvirtDir, `${name}.xml`), libvirtDomain(name, vms.length, [
      system, { file: 'site-config.raw', format: 'raw', shared: true }, { file: `${name}-data.raw`, format: 'raw' },
    ]));
  };
  for (const [b, letter] of ['a', 'b', 'c'].entries()) {
    const baseRaw = path.join(scratch, `base-${letter}.raw`);
    await writeData(baseRaw, baseBytes, seed * 31 + b);
    const base = `base-${letter}.qcow2`;
    await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', baseRaw, path.join(images, base));
    if (letter === 'a') {
      // The full raw clone: the base's guest data, then writes of its own.
      const full = path.join(images, 'full-clone.raw');
      await fs.rename(baseRaw, full);
      for (let w = 0; w < 3; w++) await overwrite(full, (w * 317 + 101) * MiB % (baseBytes - MiB), MiB, seed + 900 + w);
      await define('full-clone', { file: 'full-clone.raw', format: 'raw' }, mib(96));
    } else {
      await fs.rm(baseRaw);
    }
    for (let c = 0; c < 3; c++) {
      const name = `${letter}-clone${c + 1}`;
      const clone = path.join(images, `${name}.qcow2`);
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', clone);
      // Scattered writes of 1–8 MiB, 16–64 MiB in all, as a guest's updates and logs land.
      const writes = 4 + ((b * 3 + c) % 5);
      for (let w = 0; w < writes; w++) {
        const length = Math.min(mib(1 + ((w * 7 + c) % 8)), baseBytes / 4);
        const delta = path.join(scratch, `${name}-${w}.delta`);
        await writeData(delta, length, seed * 1000 + b * 100 + c * 10 + w);
        const at = Math.floor(((w * 211 + c * 97 + b * 53) % 1000) / 1000 * (baseBytes - length) / MiB) * MiB;
        await tool('qemu-io', '-f', 'qcow2', '-c', `write -s ${delta} ${at} ${length}`, clone);
        await fs.rm(delta);
      }
      await define(name, { file: `${name}.qcow2`, format: 'qcow2' }, mib(64 + ((b * 3 + c) % 5) * 64));
    }
  }
  await fs.rm(scratch, { recursive: true, force: true });
  const restoreVm = 'b-clone2';
  return {
    libvirtDir, vms, restoreVm,
    restoreFiles: [`${restoreVm}.qcow2`, 'base-b.qcow2', 'site-config.raw', `${restoreVm}-data.raw`].map((name) => path.join(images, name)),
    changedFiles: ['a-clone1-data.raw', 'b-clone3-data.raw', 'full-clone-data.raw'].map((name) => path.join(images, name)),
  };
}
