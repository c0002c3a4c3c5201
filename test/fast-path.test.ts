/**
 * The fast path references a disk without reading it only when its stored version can be trusted: not racily
 * clean (timestamps too recent when the version was taken), and read within --reread-after days.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../lib/catalog/migrate';
import { type BackupReport, runBackup } from '../lib/services/backups/run-backup';
import { addSource } from '../lib/services/sources/add-source';
import { pattern, writeData } from '../lib/demo/fleet';
import type { BlobStore } from '../lib/engine/repository/blob-store';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import { Repository } from '../lib/engine/repository/repository';
import { cli, createTestDatabase, projectRoot, run, tempDir } from './helpers';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const domain = (name: string, files: string[]) => `<domain><name>${name}</name><uuid>${name}</uuid><devices>${files.map((file, i) => `<disk type='file' device='disk'><driver type='raw'/><source file='${file}'/><target dev='vd${String.fromCharCode(97 + i)}'/></disk>`).join('')}</devices></domain>`;

type BackupJson = { backups: { vm: string; disks: { path: string; action: string; logicalBytes: number; bytesRead: number }[] }[] };

/** A migrated catalog and a repository, for running backups in this process (fast enough to fit in a second). */
async function catalogAndRepository(): Promise<{ sql: pg.Pool; repo: Repository }> {
  const url = await createTestDatabase();
  await migrate(url, path.join(projectRoot, 'prisma', 'migrations'));
  return { sql: new pg.Pool({ connectionString: url, max: 4 }), repo: await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB }) };
}

function diskOf(report: BackupReport, file: string) {
  const disk = report.backups.flatMap((b) => b.disks).find((d) => d.path === file);
  if (!disk) throw new Error(`${file} is not in the report: ${JSON.stringify(report.failures)}`);
  return disk;
}

describe('backup --reread-after', () => {
  it('reads every disk with 0, and a disk whose stored version was read longer ago than the limit', async () => {
    const home = await tempDir();
    const src = path.join(home, 'src');
    await fs.mkdir(src);
    await writeData(path.join(src, 'a.raw'), 2 * MiB, 1);
    await writeData(path.join(src, 'b.raw'), MiB, 2);
    await fs.writeFile(path.join(src, 'vm.xml'), domain('vm', ['a.raw', 'b.raw']));
    const url = await createTestDatabase();
    const env = { VMDEDUP_HOME: home, DATABASE_URL: url };
    expect((await cli(env, 'source', 'add', 's', '--type', 'libvirt', '--path', src)).code).toBe(0);
    await sleep(200); // the disks' last write is clearly older than the first backup's look at them
    const backup = async (...args: string[]) => {
      const result = await cli(env, 'backup', '--json', ...args);
      expect(result.code, result.stderr).toBe(0);
      return (JSON.parse(result.stdout) as BackupJson).backups[0].disks;
    };
    expect((await backup()).map((d) => d.bytesRead)).toEqual([2 * MiB, MiB]);
    expect((await backup()).map((d) => d.bytesRead)).toEqual([0, 0]); // unchanged and trusted: referenced
    const forced = await backup('--reread-after', '0');
    expect(forced.map((d) => d.bytesRead)).toEqual([2 * MiB, MiB]);
    expect(forced.map((d) => d.action)).toEqual(['referenced', 'referenced']); // read, and found identical
    expect((await backup()).map((d) => d.bytesRead)).toEqual([0, 0]);

    // a.raw's data was last read 31 days ago: not trusted under the default (30 days), trusted under 60
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const aged = async () => client.query(`UPDATE "DiskVersion" v SET "readAt" = v."readAt" - interval '31 days' FROM "Disk" d WHERE d."id" = v."diskId" AND d."path" = $1`, [path.join(src, 'a.raw')]);
    try {
      await aged();
      expect((await backup('--reread-after', '60')).map((d) => d.bytesRead)).toEqual([0, 0]);
      expect((await backup()).map((d) => d.bytesRead)).toEqual([2 * MiB, 0]);
      expect((await backup()).map((d) => d.bytesRead)).toEqual([0, 0]); // that read renewed it
      await aged();
      expect((await backup('--reread-after', '30.5')).map((d) => d.bytesRead)).toEqual([2 * MiB, 0]);
    } finally {
      await client.end();
    }

    for (const bad of ['-1', 'soon', '', '1e3']) {
      const refused = await cli(env, 'backup', `--reread-after=${bad}`);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/--reread-after must be a number of days/);
    }
  });
});

describe('racily clean disks', () => {
  let sql: pg.Pool;
  let repo: Repository;
  beforeAll(async () => {
    ({ sql, repo } = await catalogAndRepository());
  });
  afterAll(async () => sql?.end());

  it('reads again a disk whose timestamps were not clearly older than its recorded version', async () => {
    const src = await tempDir();
    const disk = path.join(src, 'disk.raw');
    await writeData(disk, MiB, 3);
    await fs.writeFile(path.join(src, 'vm.xml'), domain('vm', ['disk.raw']));
    // a file server whose clock runs ahead: the mtime is in this host's future, so never clearly older
    const future = new Date(Date.now() + 60_000);
    await fs.utimes(disk, future, future);
    await addSource(sql, { name: 'ahead', type: 'libvirt', path: src });
    expect(diskOf(await runBackup(sql, { repo, source: 'ahead' }), disk).bytesRead).toBe(MiB);
    expect(diskOf(await runBackup(sql, { repo, source: 'ahead' }), disk).bytesRead).toBe(MiB);

    // once its timestamps are clearly in the past, the version read then is trusted
    const past = new Date(Date.now() - 3_600_000);
    await fs.utimes(disk, past, past);
    await sleep(200); // ctime (now) must be older than the margin too
    expect(diskOf(await runBackup(sql, { repo, source: 'ahead' }), disk).bytesRead).toBe(MiB);
    expect(diskOf(await runBackup(sql, { repo, source: 'ahead' }), disk).bytesRead).toBe(0);
  });

  describe('on a filesystem with whole-second timestamps (ext2 with 128-byte inodes, loop-mounted)', () => {
    let mountPoint: string | undefined;
    beforeAll(async () => {
      if (process.getuid?.() !== 0) return;
      const dir = await tempDir();
      const image = path.join(dir, 'coarse.img');
      await fs.writeFile(image, '');
      await fs.truncate(image, 32 * MiB);
      const target = path.join(dir, 'mnt');
      await fs.mkdir(target);
      try {
        await run('mkfs.ext2', ['-q', '-F', '-I', '128', image]);
        await run('mount', ['-o', 'loop', image, target]);
        mountPoint = target;
      } catch {
        mountPoint = undefined; // no loop devices here: the case below is skipped
      }
    });
    afterAll(async () => {
      if (mountPoint) await run('umount', [mountPoint]);
    });

    it('reads a disk modified within the same second, with size and mtime restored, on the next backup', async (context) => {
      if (!mountPoint) return context.skip();
      const src = path.join(mountPoint, 'src');
      await fs.mkdir(src);
      const disk = path.join(src, 'disk.raw');
      await fs.writeFile(disk, pattern(MiB, 1));
      await fs.writeFile(path.join(src, 'vm.xml'), domain('vm', ['disk.raw']));
      await addSource(sql, { name: 'coarse', type: 'libvirt', path: src });
      // In place, same size: the guest writing its disk.
      const guestWrites = async (seed: number) => {
        const handle = await fs.open(disk, 'r+');
        await handle.write(pattern(MiB, seed), 0, MiB, 0);
        await handle.close();
      };
      // While the backup reads the disk (its workers started), the guest writes it at the start of a second: the
      // backup sees the change and reads it again, and records the version it saw in that same second. Right
      // after, the guest writes again and something puts the mtime back (`touch -d`): size, inode, mtime and
      // (in this second) ctime are as recorded, and the version token cannot tell.
      let written: { mtimeNs: bigint; ctimeNs: bigint } | undefined;
      let sameSecond = false;
      const store = new FsBlobStore(await tempDir());
      const hooked: BlobStore = {
        location: store.location,
        get: (key) => store.get(key),
        has: (key) => store.has(key),
        size: (key) => store.size(key),
        delete: (key) => store.delete(key),
        list: (prefix) => store.list(prefix),
        put: async (key, data) => {
          if (key.startsWith('chunks/') && !written) {
            while (Date.now() % 1000 > 20) await sleep(2);
            await guestWrites(2);
            written = await fs.stat(disk, { bigint: true });
          }
          await store.put(key, data);
          if (key.startsWith('images/') && written && !sameSecond) {
            await guestWrites(3);
            await run('touch', ['-m', '-d', `@${written.mtimeNs / 1_000_000_000n}`, disk]);
            const now = await fs.stat(disk, { bigint: true });
            sameSecond = now.mtimeNs === written.mtimeNs && now.ctimeNs === written.ctimeNs;
          }
        },
      };
      const hookedRepo = await Repository.openOrInit(hooked, { blockSize: MiB });
      const first = diskOf(await runBackup(sql, { repo: hookedRepo, source: 'coarse' }), disk);
      expect(first.bytesRead).toBe(2 * MiB); // read twice: it changed while being read
      expect(sameSecond, 'the second write fell in the next second').toBe(true);
      // Past the margin now, so today's timestamps look old enough: only the recorded flag can tell.
      await sleep(3100);
      const second = diskOf(await runBackup(sql, { repo: hookedRepo, source: 'coarse' }), disk);
      expect(second.bytesRead).toBe(MiB);
      expect(second.action).toBe('stored'); // the new content, not the first backup's
    });
  });
});
