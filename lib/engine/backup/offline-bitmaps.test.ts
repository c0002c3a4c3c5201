/**
 * Incremental backups of a shut-off domain's qcow2 disks without libvirt: the real offlineTracking (qemu-img,
 * qemu-nbd, nbdinfo on real files) against a fake virsh that keeps checkpoint metadata in a folder. Every backup is
 * restored (its stored bytes put together) and compared with the file byte for byte.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libvirtDomainXml, readStoredBlock, seededRandom, tempDir } from '../../../test/helpers';
import { BlockPool } from '../chunking/block-pool';
import { FsBlobStore } from '../repository/fs-blob-store';
import { Repository } from '../repository/repository';
import type { BackupImageManifest } from '../repository/manifests';
import { scanSource } from '../sources/inventory';
import { bitmapsOf } from '../sources/dirty-bitmaps';
import { type HeldDomain, disksOf, offlineTracking } from '../sources/libvirt-host';
import { type StoredDiskLookup, type StoredVersion, backupVms } from './backup';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const hasNbdinfo = await run('nbdinfo', ['--version']).then(() => true, () => false);

/** virsh as offlineTracking calls it: checkpoint metadata as empty files, domains always shut off. */
const FAKE_VIRSH = `#!/bin/bash
shift 3; cmd=$1; shift
while [ $# -gt 0 ]; do case $1 in --domain) dom=$2; shift;; --xmlfile) xml=$2; shift;; --checkpointname) ck=$2; shift;; esac; shift; done
d="$FAKE_VIRSH_DIR/$dom"; mkdir -p "$d"
case $cmd in
  checkpoint-list) ls "$d";;
  checkpoint-create) n=$(sed -n 's/.*<name>\\([^<]*\\)<\\/name>.*/\\1/p' "$xml"); touch "$d/$n"; cp "$xml" "$d/.$n.xml";;
  checkpoint-delete) [ -e "$d/$ck" ] || { echo "error: no checkpoint $ck" >&2; exit 1; }; rm "$d/$ck";;
  domstate) echo 'shut off';;
  *) echo "error: fake virsh: $cmd" >&2; exit 1;;
esac
`;

let savedPath: string | undefined;
let virshDir = '';
beforeAll(async () => {
  const bin = await tempDir();
  await fs.writeFile(path.join(bin, 'virsh'), FAKE_VIRSH, { mode: 0o755 });
  virshDir = await tempDir();
  savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${process.env.PATH}`;
  process.env.FAKE_VIRSH_DIR = virshDir;
});
afterAll(() => {
  process.env.PATH = savedPath;
  delete process.env.FAKE_VIRSH_DIR;
});

/** A catalog as record-backup-image files versions: by identifier and token (the change token too), newest read wins. */
function fakeCatalog() {
  const versions = new Map<string, StoredVersion>();
  const lookup: StoredDiskLookup = async (disks) => disks.map((d) => versions.get(`${d.identifier}\0${d.versionToken}`));
  const onImages = async (images: BackupImageManifest[]) => {
    for (const image of images) {
      for (const disk of image.disks) {
        const put = (token: string, racilyClean: boolean) => {
          const key = `${disk.identifier}\0${token}`;
          const readAt = new Date(disk.readAt!);
          const old = versions.get(key);
          if (!old || readAt >= old.readAt) versions.set(key, { digest: disk.digest, readAt, racilyClean });
        };
        put(disk.versionToken, disk.racilyClean ?? true);
        if (disk.changeToken) put(disk.changeToken, false);
      }
    }
  };
  return { lookup, onImages };
}

/** The bytes a stored disk restores to. */
async function restored(repo: Repository, pool: BlockPool, digest: string): Promise<Buffer> {
  const manifest = await repo.getStoredDisk(digest);
  const file = manifest.files[0];
  const out = Buffer.alloc(file.size);
  for (const [n, id] of file.blocks.entries()) {
    const length = Math.min(manifest.blockSize, file.size - n * manifest.blockSize);
    if (id) (await readStoredBlock(repo, pool, id, length)).copy(out, n * manifest.blockSize);
  }
  return out;
}

type Setup = { root: string; files: string[]; backup: () => Promise<{ ok: boolean; read: Record<string, number>; warnings: string[] }> };

/** A shut-off domain `name` with qcow2 disks `names` in a libvirt folder; each backup is checked byte for byte. */
async function setup(name: string, names: string[], blockSize = 64 * KiB): Promise<Setup & { close: () => Promise<void> }> {
  const root = await tempDir();
  const files = names.map((n) => path.join(root, n));
  for (const file of files) await run('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(8 * MiB)]);
  const xml = libvirtDomainXml(name, '11111111-2222-3333-4444-555555555555', files.map((file) => ({ file, type: 'qcow2' })));
  await fs.writeFile(path.join(root, `${name}.xml`), xml);
  const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize });
  const pool = new BlockPool({ ids: repo.ids, blockSize, threads: 1, slots: 4, forRestore: true });
  const catalog = fakeCatalog();
  const backup = async () => {
    const inventory = await scanSource({ name: 's', type: 'libvirt', path: root });
    for (const vm of inventory.vms) vm.domain = { uri: 'test:///', state: 'shut off', persistent: true };
    const warnings: string[] = [];
    const holdDomain = async (): Promise<HeldDomain> => {
      const changes = await offlineTracking('test:///', name, disksOf(await fs.readFile(path.join(root, `${name}.xml`), 'utf8')));
      return { consistency: 'offline', thaw: async () => ({}), ...(changes ? { changes } : {}) };
    };
    const [result] = await backupVms({ inventory, repo, storeAhead: 0, lookupStoredDisks: catalog.lookup, onImages: catalog.onImages, holdDomain, onWarning: (w) => warnings.push(w) });
    if (!result.ok) return { ok: false, read: {}, warnings: [...warnings, result.error] };
    const read: Record<string, number> = {};
    for (const disk of result.image.disks) {
      read[path.basename(disk.path)] = disk.bytesRead;
      const actual = await fs.readFile(disk.path);
      const got = await restored(repo, pool, disk.digest);
      if (!got.equals(actual)) throw new Error(`${path.basename(disk.path)}: the backup does not restore to the file (read ${disk.bytesRead}; ${warnings.join('; ')})`);
    }
    return { ok: true, read, warnings };
  };
  return { root, files, backup, close: () => pool.close() };
}

const io = (file: string, ...commands: string[]) => run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]);
const settle = () => new Promise((resolve) => setTimeout(resolve, 150)); // out of the racy margin

describe.skipIf(!hasNbdinfo)('shut-off domains: incremental reads from persistent bitmaps (fake virsh, real files)', () => {
  it('reads only what changed, and restores to the file', async () => {
    const s = await setup('advoff-basic', ['a.qcow2', 'b.qcow2']);
    try {
      await io(s.files[0], `write -P 1 0 ${4 * MiB}`);
      await io(s.files[1], `write -P 2 0 ${4 * MiB}`);
      expect((await s.backup()).ok).toBe(true);
      await settle();
      await io(s.files[0], 'write -P 3 65536 4096');
      const second = await s.backup();
      expect(second.ok).toBe(true);
      expect(second.read['b.qcow2']).toBe(0);
      expect(second.read['a.qcow2']).toBeLessThan(2 * MiB);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('a bitmap someone disabled (it marks no write since) is not read from: the disk is read whole', async () => {
    const s = await setup('advoff-disabled', ['a.qcow2']);
    try {
      await io(s.files[0], `write -P 1 0 ${4 * MiB}`);
      expect((await s.backup()).ok).toBe(true);
      const [checkpoint] = (await fs.readdir(path.join(virshDir, 'advoff-disabled'))).filter((n) => !n.startsWith('.'));
      await run('qemu-img', ['bitmap', '-f', 'qcow2', '--disable', s.files[0], checkpoint]);
      await io(s.files[0], 'write -P 7 65536 4096');
      await settle();
      expect((await s.backup()).ok).toBe(true);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('a disk copied over another of the same domain (cp: the same inode, the other one\'s bitmaps) is read whole', async () => {
    const s = await setup('advoff-copied', ['a.qcow2', 'b.qcow2']);
    try {
      await io(s.files[0], `write -P 1 0 ${4 * MiB}`);
      await io(s.files[1], `write -P 2 0 ${2 * MiB}`, `write -P 5 ${5 * MiB} ${MiB}`);
      expect((await s.backup()).ok).toBe(true);
      await settle();
      await io(s.files[0], 'write -P 3 65536 4096');
      await run('cp', [s.files[0], s.files[1]]);
      await settle();
      expect((await s.backup()).ok).toBe(true);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('a seeded random model: writes, zero writes, discards, resizes, internal snapshots, commits, copies and conversions between backups; every backup restores to the files', async () => {
    const seed = Number(process.env.VMDEDUP_TEST_SEED ?? 7);
    const random = seededRandom(seed);
    const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)];
    const s = await setup('advoff-model', ['a.qcow2', 'b.qcow2', 'c.qcow2'], pick([4 * KiB, 64 * KiB]));
    const sizes = new Map(s.files.map((f) => [f, 8 * MiB]));
    const done: string[] = [];
    let incremental = 0;
    try {
      for (let round = 0; round < 14; round++) {
        for (let k = Math.floor(random() * 3); k > 0; k--) {
          const file = pick(s.files);
          const size = sizes.get(file)!;
          const at = () => Math.floor(random() * (size / 512)) * 512;
          const kind = random();
          if (kind < 0.45) {
            const commands = Array.from({ length: 1 + Math.floor(random() * 6) }, () => {
              const start = at();
              const length = Math.min(size - start, 512 * (1 + Math.floor(random() * 400)));
              const op = random();
              return op < 0.6 ? `write -P ${1 + Math.floor(random() * 254)} ${start} ${length}` : op < 0.8 ? `write -z ${random() < 0.5 ? '-u ' : ''}${start} ${length}` : `discard ${start} ${length}`;
            });
            await io(file, ...commands);
            done.push(`${round} ${path.basename(file)}: ${commands.join('; ')}`);
          } else if (kind < 0.55) {
            const grown = size + MiB * (1 + Math.floor(random() * 3));
            const shrunk = Math.max(2 * MiB, size - MiB * (1 + Math.floor(random() * 3)));
            const to = random() < 0.6 ? grown : shrunk;
            await run('qemu-img', ['resize', '-q', '-f', 'qcow2', ...(to < size ? ['--shrink'] : []), file, String(to)]);
            sizes.set(file, to);
            done.push(`${round} ${path.basename(file)}: resize ${to}`);
          } else if (kind < 0.65) {
            const op = pick(['-c', '-d', '-a']);
            await run('qemu-img', ['snapshot', op, 's1', file]).catch(() => undefined);
            done.push(`${round} ${path.basename(file)}: snapshot ${op}`);
          } else if (kind < 0.75) {
            const overlay = `${file}.overlay`;
            await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', file, '-F', 'qcow2', overlay]);
            const start = at();
            await io(overlay, `write -P 9 ${start} ${Math.min(size - start, 3 * 65536)}`);
            await run('qemu-img', ['commit', '-q', '-f', 'qcow2', '-d', overlay]);
            await fs.rm(overlay);
            done.push(`${round} ${path.basename(file)}: commit at ${start}`);
          } else if (kind < 0.83) {
            // An older copy of the same disk put back over it (cp: the same inode).
            const copy = `${file}.copy`;
            if (await fs.stat(copy).then(() => true, () => false)) {
              await run('cp', [copy, file]);
              sizes.set(file, Number(JSON.parse((await run('qemu-img', ['info', '--output=json', file])).stdout)['virtual-size']));
              done.push(`${round} ${path.basename(file)}: copy put back`);
            } else {
              await run('cp', [file, copy]);
              done.push(`${round} ${path.basename(file)}: copied aside`);
            }
          } else if (kind < 0.95) {
            // Compacted with its bitmaps, or another disk of the domain, copied over it (the same inode).
            const other = pick(s.files);
            const compact = `${file}.compact`;
            await run('qemu-img', ['convert', '--bitmaps', '-f', 'qcow2', '-O', 'qcow2', other, compact]);
            await run('cp', [compact, file]);
            await fs.rm(compact);
            sizes.set(file, sizes.get(other)!);
            done.push(`${round} ${path.basename(file)}: ${path.basename(other)} converted over it`);
          } else {
            await run('qemu-img', ['bitmap', '-f', 'qcow2', '--add', '--enable', file, `other-${round}`]);
            done.push(`${round} ${path.basename(file)}: a bitmap of another tool`);
          }
        }
        await settle();
        let result;
        try {
          result = await s.backup();
        } catch (err) {
          throw new Error(`seed ${seed} round ${round}: ${(err as Error).message}\n${done.join('\n')}`);
        }
        expect(result.ok, result.warnings.join('; ')).toBe(true);
        if (Object.entries(result.read).some(([name, n]) => n > 0 && n < 2 * MiB && name)) incremental++;
      }
      expect(incremental).toBeGreaterThan(0);
      // Older checkpoints go: each file keeps a few bitmaps of this tool, not one per backup.
      for (const file of s.files) {
        const ours = (await bitmapsOf(file)).filter((b) => b.name.startsWith('vmdedup-'));
        expect(ours.length, `${path.basename(file)}: ${ours.map((b) => b.name).join(', ')}`).toBeLessThanOrEqual(4);
      }
    } finally {
      await s.close();
    }
  }, 120_000);

  it('what a backup killed midway leaves (a bitmap without its checkpoint, a checkpoint without its bitmaps) is cleaned up, and read past', async () => {
    const s = await setup('advoff-killed', ['a.qcow2', 'b.qcow2']);
    const dir = path.join(virshDir, 'advoff-killed');
    const checkpoints = async () => (await fs.readdir(dir)).filter((n) => !n.startsWith('.')).sort();
    try {
      await io(s.files[0], `write -P 1 0 ${4 * MiB}`);
      await io(s.files[1], `write -P 2 0 ${4 * MiB}`);
      expect((await s.backup()).ok).toBe(true);
      const [first] = await checkpoints();
      // Killed between the bitmaps and the redefine: a bitmap (newer than any checkpoint) no checkpoint names.
      await run('qemu-img', ['bitmap', '-f', 'qcow2', '--add', '--enable', s.files[0], 'vmdedup-zzzzzzzzz1']);
      // Killed between removing a checkpoint's bitmaps and its metadata: the newest checkpoint has no bitmap left.
      await fs.writeFile(path.join(dir, 'vmdedup-zzzzzzzzz0'), '');
      await settle();
      await io(s.files[0], 'write -P 3 65536 4096');
      await io(s.files[1], `write -P 4 ${3 * MiB} 4096`);
      const second = await s.backup();
      expect(second.ok).toBe(true);
      expect(second.read['a.qcow2']).toBeLessThan(2 * MiB); // read from the first checkpoint's bitmap
      expect((await checkpoints()).includes('vmdedup-zzzzzzzzz0')).toBe(false);
      expect((await checkpoints()).includes(first)).toBe(true);
      expect((await bitmapsOf(s.files[0])).map((b) => b.name)).not.toContain('vmdedup-zzzzzzzzz1');
      await settle();
      await io(s.files[1], `write -P 5 ${5 * MiB} 4096`);
      expect((await s.backup()).ok).toBe(true);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('a disk compacted (qemu-img convert --bitmaps: its bitmaps, another layout) and copied back over itself (cp: the same inode) is read whole', async () => {
    const s = await setup('advoff-converted', ['a.qcow2']);
    try {
      await io(s.files[0], `write -P 1 ${4 * MiB} ${MiB}`, `write -P 2 0 ${MiB}`);
      expect((await s.backup()).ok).toBe(true);
      const copy = path.join(s.root, 'compact.qcow2');
      await run('qemu-img', ['convert', '--bitmaps', '-f', 'qcow2', '-O', 'qcow2', s.files[0], copy]);
      await run('cp', [copy, s.files[0]]);
      await settle();
      expect((await s.backup()).ok).toBe(true);
    } finally {
      await s.close();
    }
  }, 60_000);
});
