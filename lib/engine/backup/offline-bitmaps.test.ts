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
  const pool = new BlockPool({ blockSize, threads: 1, slots: 4, forRestore: true });
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
});
