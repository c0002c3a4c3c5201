import fsSync from 'node:fs';
/**
 * The scan memo changes what a scan reads, never what it finds: after every random edit of a real fleet (configs
 * rewritten, overlays rebased onto another base, disks replaced, symlinked, removed, turned into a FIFO), a scan
 * with the memo of the previous scans gives the same inventory as a scan without one.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildFleet } from '../../demo/fleet';
import { qemuImg, seededRandom, tempDir } from '../../../test/helpers';
import { type SourceInventory, scanSource } from './inventory';
import { ScanMemo } from './scan-memo';
import type { SourceSpec } from './types';

const run = promisify(execFile);

/** Everything a scan says, as plain data (Maps and Buffers spelled out). */
function picture(inventory: SourceInventory): unknown {
  return JSON.parse(JSON.stringify({
    vms: inventory.vms.map((vm) => ({ ...vm, config: vm.config && { ...vm.config, configBytes: vm.config.configBytes.toString('base64') } })),
    disks: [...inventory.disks.entries()].sort(),
    usedBy: [...inventory.usedBy.entries()].sort(),
    warnings: inventory.warnings,
    problems: inventory.problems,
  }));
}

/** Timestamps old enough for the memo to trust (version-token.ts: 100 ms on fine-grained filesystems). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 150));

describe('scan memo', () => {
  it('a scan with the memo finds what a scan without it finds, after every random edit (seeded)', async () => {
    for (const seed of [1, 2]) {
      const home = await tempDir();
      const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 2, clonesPerBase: 3, baseMiB: 1, configDiskMiB: 1, privateDiskMiB: 1, vmwareVms: 2, vmwareBaseMiB: 1, seed });
      const memoFile = path.join(home, 'memo.json');
      const rand = seededRandom(seed);
      const pick = <T,>(items: T[]) => items[Math.floor(rand() * items.length)];
      const sources: SourceSpec[] = [
        { name: 'kvm', type: 'libvirt', path: fleet.libvirtDir },
        { name: 'esx', type: 'vmware', path: fleet.vmwareDir! },
      ];
      const images = path.join(fleet.libvirtDir, 'images');
      const edits: Record<string, () => Promise<void>> = {
        // The same config rewritten with another disk path (a slot retargeted).
        async retargetSlot() {
          const config = path.join(fleet.libvirtDir, `${pick(fleet.libvirtVms)}.xml`);
          const text = await fs.readFile(config, 'utf8');
          const disks = (await fs.readdir(images)).filter((name) => !name.startsWith('.'));
          await fs.writeFile(config, text.replace(/file='images\/[^']*'/, `file='images/${pick(disks)}'`));
        },
        // An overlay re-based onto the other base, header only (its size does not change).
        async rebaseOverlay() {
          const overlays = (await fs.readdir(images)).filter((name) => /^vm\d+\.qcow2$/.test(name));
          if (overlays.length === 0) return;
          const overlay = path.join(images, pick(overlays));
          // Not a FIFO left by removeDisk (qemu-img would wait on it for ever), nor a symlink.
          if (!(await fs.lstat(overlay)).isFile()) return;
          const info = JSON.parse(await qemuImg('info', '-U', '--output=json', overlay).catch(() => '{}')) as { 'backing-filename'?: string };
          if (!info['backing-filename']) return;
          const other = info['backing-filename'] === 'base-1.qcow2' ? 'base-2.qcow2' : 'base-1.qcow2';
          await run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', other, '-F', 'qcow2', overlay]);
        },
        // A disk replaced by another file under its name (a new inode), or by a symlink to another disk.
        async replaceDisk() {
          const disks = (await fs.readdir(images)).filter((name) => name.endsWith('.raw'));
          if (disks.length < 2) return;
          const [a, b] = [pick(disks), pick(disks)];
          if (a === b) return;
          await fs.rm(path.join(images, a));
          if (rand() < 0.5) await fs.copyFile(path.join(images, b), path.join(images, a));
          else await fs.symlink(b, path.join(images, a));
        },
        // A disk gone, or a FIFO in its place.
        async removeDisk() {
          const disks = (await fs.readdir(images)).filter((name) => name.endsWith('.qcow2') && !name.startsWith('base'));
          if (disks.length === 0) return;
          const victim = path.join(images, pick(disks));
          await fs.rm(victim);
          if (rand() < 0.5) await run('mkfifo', [victim]);
        },
        // A config broken, then (maybe) another VM's config copied over it.
        async breakConfig() {
          const config = path.join(fleet.libvirtDir, `${pick(fleet.libvirtVms)}.xml`);
          if (rand() < 0.5) await fs.writeFile(config, '<domain><name>broken');
          else await fs.copyFile(path.join(fleet.libvirtDir, `${pick(fleet.libvirtVms)}.xml`), config).catch(() => undefined);
        },
        // A VMware descriptor's CID changed in place, its size kept.
        async touchVmdk() {
          const vmdks: string[] = [];
          for (const entry of await fs.readdir(fleet.vmwareDir!, { recursive: true })) if (entry.endsWith('.vmdk')) vmdks.push(path.join(fleet.vmwareDir!, entry));
          const file = pick(vmdks);
          const text = await fs.readFile(file, 'latin1').catch(() => '');
          if (/^CID=[0-9a-f]{8}/m.test(text)) await fs.writeFile(file, text.replace(/^CID=[0-9a-f]{8}/m, `CID=${Math.floor(rand() * 0xffffffff).toString(16).padStart(8, '0')}`), 'latin1');
        },
        // The images folder moved, a symlink left at its old name (or a disk named through a symlinked folder).
        async moveFolder() {
          const real = await fs.realpath(images);
          const moved = `${real}-${Math.floor(rand() * 1e6)}`;
          await fs.rename(real, moved);
          await fs.rm(images, { force: true });
          await fs.symlink(path.basename(moved), images);
        },
        async nothing() {},
      };
      // Every kind of edit at least twice, in a seeded order, between scans.
      const order = [...Object.keys(edits), ...Object.keys(edits)].map((edit) => ({ edit, key: rand() })).sort((x, y) => x.key - y.key).map((x) => x.edit);
      for (const [step, edit] of ['nothing', ...order].entries()) {
        await edits[edit]();
        await settle();
        for (const source of sources) {
          const scanned = await scanSource(source);
          // Canonical paths as libc's realpath says (the scan resolves a folder once and each name by an lstat).
          for (const disk of scanned.disks.values()) expect(disk.path, `seed ${seed}, step ${step} (${edit})`).toBe(fsSync.realpathSync.native(disk.path));
          const fresh = picture(scanned);
          const memo = await ScanMemo.load(memoFile);
          const remembered = picture(await scanSource(source, { memo }));
          await memo.save(memoFile);
          expect(remembered, `seed ${seed}, step ${step} (${edit}), source ${source.name}`).toEqual(fresh);
        }
      }
    }
  });

  it('uses what it remembers: an unchanged disk header is not read again, a changed one is', async () => {
    const home = await tempDir();
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(home, 'base.qcow2'), '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(home, 'other.qcow2'), '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(home, 'clone.qcow2'));
    await fs.writeFile(path.join(home, 'vm.xml'), `<domain><name>vm</name><devices><disk type='file' device='disk'><driver type='qcow2'/><source file='clone.qcow2'/><target dev='vda'/></disk></devices></domain>`);
    await settle();
    const source: SourceSpec = { name: 's', type: 'libvirt', path: home };
    const memo = new ScanMemo();
    await scanSource(source, { memo });
    // Another header under the same file's stat is what a remembered header would hide: proof that it is used.
    const memoFile = path.join(home, 'memo.json');
    await memo.save(memoFile);
    const saved = JSON.parse(await fs.readFile(memoFile, 'utf8')) as { headers: [string, { header: { parent?: { path: string } } }][] };
    const clone = saved.headers.find(([key]) => key.endsWith('clone.qcow2'))!;
    clone[1].header.parent!.path = path.join(home, 'other.qcow2');
    await fs.writeFile(memoFile, JSON.stringify(saved));
    const planted = await scanSource(source, { memo: await ScanMemo.load(memoFile) });
    expect(planted.disks.get(path.join(home, 'clone.qcow2'))?.parent?.path).toBe(path.join(home, 'other.qcow2'));
    // Rebased for real: the file's stat changed, the header is read again.
    await run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(home, 'clone.qcow2')]);
    const reread = await scanSource(source, { memo: await ScanMemo.load(memoFile) });
    expect(reread.disks.get(path.join(home, 'clone.qcow2'))?.parent?.path).toBe(path.join(home, 'base.qcow2'));
  });

  it('drops a saved entry of the wrong shape and keeps the others: never a crash, a lost parent or another format', async () => {
    const home = await tempDir();
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(home, 'b1.qcow2'), '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'b1.qcow2', '-F', 'qcow2', path.join(home, 'c.qcow2'));
    const domain = (name: string, file: string) => `<domain><name>${name}</name><devices><disk type='file' device='disk'><driver type='qcow2'/><source file='${file}'/><target dev='vda'/></disk></devices></domain>`;
    await fs.writeFile(path.join(home, 'vm.xml'), domain('vm', 'c.qcow2'));
    await fs.writeFile(path.join(home, 'vm2.xml'), domain('vm2', 'b1.qcow2'));
    await settle();
    const source: SourceSpec = { name: 's', type: 'libvirt', path: home };
    const memoFile = path.join(home, 'cache', 'memo.json');
    const first = new ScanMemo();
    const fresh = picture(await scanSource(source, { memo: first }));
    await first.save(memoFile);
    const clean = await fs.readFile(memoFile, 'utf8');
    type Saved = { configs: [string, { parsed: unknown }][]; headers: [string, { header: unknown }][] };
    const config = (saved: Saved) => saved.configs.find(([key]) => key.endsWith('/vm.xml'))![1];
    const header = (saved: Saved) => saved.headers.find(([key]) => key.endsWith('/c.qcow2'))![1];
    const edits: ((saved: Saved) => void)[] = [
      (saved) => { config(saved).parsed = { name: 'vm', uuid: '', slots: 5 }; },
      (saved) => { config(saved).parsed = 'vm'; },
      (saved) => { (config(saved).parsed as { slots: unknown[] }).slots = [null]; },
      (saved) => { (config(saved).parsed as { slots: { path: unknown }[] }).slots[0].path = 'relative.qcow2'; },
      (saved) => { header(saved).header = 1; },
      (saved) => { (header(saved).header as { format: string }).format = 'vmdk'; },
      (saved) => { (header(saved).header as { parent: unknown }).parent = 'b1.qcow2'; },
      (saved) => { (header(saved).header as { parent: unknown }).parent = { pointer: 'b1.qcow2', path: 7 }; },
    ];
    for (const [index, edit] of edits.entries()) {
      const saved = JSON.parse(clean) as Saved;
      edit(saved);
      await fs.writeFile(memoFile, JSON.stringify(saved));
      const memo = await ScanMemo.load(memoFile);
      expect(picture(await scanSource(source, { memo })), `edit ${index}`).toEqual(fresh);
    }
    // A memo as save() wrote it is used whole: every config and header it holds is known after loading.
    const loaded = await ScanMemo.load(memoFile.replace('memo.json', 'none.json'));
    expect(loaded.knowsHeader(path.join(home, 'c.qcow2'), 'qcow2')).toBe(false);
    await fs.writeFile(memoFile, clean);
    const whole = await ScanMemo.load(memoFile);
    expect(whole.knowsHeader(path.join(home, 'c.qcow2'), 'qcow2')).toBe(true);
    expect(whole.knowsHeader(path.join(home, 'b1.qcow2'), 'qcow2')).toBe(true);
    expect(whole.config(path.join(home, 'vm.xml'), await fs.readFile(path.join(home, 'vm.xml')))).toMatchObject({ name: 'vm' });
  });

  it('a torn or foreign memo file is an empty memo, and a header read too soon after a change is not remembered', async () => {
    const home = await tempDir();
    const memoFile = path.join(home, 'memo.json');
    for (const text of ['{"version":1,"configs":[["a",', 'null', '{"version":99,"configs":[],"headers":[]}', '[1,2]']) {
      await fs.writeFile(memoFile, text);
      const memo = await ScanMemo.load(memoFile);
      expect(memo.knowsHeader('/x', 'raw')).toBe(false);
      expect(memo.config('/x.xml', Buffer.from('x'))).toBeUndefined();
    }
    await fs.writeFile(path.join(home, 'disk.raw'), Buffer.alloc(4096));
    await fs.writeFile(path.join(home, 'vm.xml'), `<domain><name>vm</name><devices><disk type='file' device='disk'><source file='disk.raw'/><target dev='vda'/></disk></devices></domain>`);
    const memo = new ScanMemo();
    await scanSource({ name: 's', type: 'libvirt', path: home }, { memo }); // at once: the disk was written within the racy margin
    expect(memo.knowsHeader(path.join(home, 'disk.raw'), 'raw')).toBe(false);
    await settle();
    await scanSource({ name: 's', type: 'libvirt', path: home }, { memo });
    expect(memo.knowsHeader(path.join(home, 'disk.raw'), 'raw')).toBe(true);
  });
});
