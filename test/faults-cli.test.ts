/**
 * `vmdedup backup` when what every VM needs fails under it: the repository's disk fills up or turns read-only
 * (a real tmpfs), the catalog's PostgreSQL is killed mid-run (a separate embedded server). Each gives one line
 * naming the VM and the cause, the JSON with what was saved and what was not, exit 1, and a catalog that names
 * nothing the repository lacks.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureEmbeddedCatalog, stopEmbeddedCatalog } from '../lib/catalog/embedded-postgres';
import { buildFleet, overwrite, type Fleet } from '../lib/demo/fleet';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import { Repository } from '../lib/engine/repository/repository';
import { canMountTmpfs, cli, createTestDatabase, mountTmpfs, remountTmpfs, repositoryImageIds, tempDir, unmountTmpfs } from './helpers';

type BackupJson = {
  backups: { vm: string; backupId: string }[];
  failures: { vm: string; source: string; error: string; attempted: boolean; backupId?: string }[];
  stopped?: { vm?: string; source: string; error: string };
};

async function tempFilesIn(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && e.name.includes('.tmp-')).map((e) => e.name);
}

/** Every image the catalog lists is in the repository, with its stored disks and every chunk they name. */
async function catalogMatchesRepository(env: Record<string, string>, repoDir: string): Promise<string[]> {
  const listed = await cli(env, 'backups', '--json');
  expect(listed.code).toBe(0);
  const ids = (JSON.parse(listed.stdout) as { backups: { backupId: string }[] }).backups.map((b) => b.backupId);
  const repo = await Repository.open(new FsBlobStore(repoDir));
  for (const id of ids) {
    const image = await repo.getBackupImage(id);
    for (const disk of image.disks) {
      const stored = await repo.getStoredDisk(disk.digest);
      for (const block of stored.files.flatMap((file) => file.blocks)) if (block) expect(await repo.hasChunk(block)).toBe(true);
    }
  }
  return ids;
}

function lines(text: string): string[] {
  return text.split('\n').filter(Boolean);
}

const canMount = await canMountTmpfs();

describe.skipIf(!canMount)('vmdedup backup on a repository disk that fills up or turns read-only (tmpfs; skipped when mount is not permitted)', () => {
  let env: Record<string, string>;
  let fleet: Fleet;
  let repoDir: string;

  beforeAll(async () => {
    const home = await tempDir();
    // Four VMs of ~8 MiB each (2 MiB written per private disk at least): more than the 8 MiB the repository gets.
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 4, baseMiB: 2, configDiskMiB: 1, privateDiskMiB: 3, vmwareVms: 0 });
    repoDir = (await mountTmpfs('size=8m'))!;
    env = { VMDEDUP_HOME: home, VMDEDUP_REPOSITORY: repoDir, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
  });
  afterAll(unmountTmpfs);

  it('disk full: one line naming the VM and the cause, the JSON with what was saved, exit 1, nothing recorded that the repository lacks', async () => {
    const result = await cli(env, 'backup', '--json');
    expect(result.code).toBe(1);
    const [line, ...more] = lines(result.stderr);
    expect(more).toEqual([]);
    const match = new RegExp(`^vmdedup: (vm\\d\\d): repository ${repoDir}: no space left on device \\(ENOSPC\\); the run stopped: (\\d) VMs? not backed up \\((.*)\\)$`).exec(line);
    expect(match, line).not.toBeNull();
    const [, failedVm, skippedCount, skippedNames] = match!;

    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups.length).toBeGreaterThan(0);
    expect(report.stopped).toEqual({ vm: failedVm, source: 'kvm', error: `repository ${repoDir}: no space left on device (ENOSPC)` });
    const [failed, ...skipped] = report.failures;
    expect(failed).toEqual({ vm: failedVm, source: 'kvm', error: `repository ${repoDir}: no space left on device (ENOSPC)`, attempted: true });
    expect(skipped.map((f) => f.vm).join(', ')).toBe(skippedNames);
    expect(skipped).toHaveLength(Number(skippedCount));
    for (const f of skipped) expect(f).toMatchObject({ attempted: false, error: `not backed up: the run stopped at ${failedVm} (repository ${repoDir}: no space left on device (ENOSPC))` });
    expect([...report.backups.map((b) => b.vm), ...report.failures.map((f) => f.vm)].sort()).toEqual(fleet.libvirtVms);

    expect((await catalogMatchesRepository(env, repoDir)).sort()).toEqual(report.backups.map((b) => b.backupId).sort());
    expect(await tempFilesIn(repoDir)).toEqual([]);

    // Space freed: the next run backs up the rest and reuses what is stored.
    await remountTmpfs(repoDir, 'size=64m');
    const again = await cli(env, 'backup', '--json');
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    expect((JSON.parse(again.stdout) as BackupJson).backups.map((b) => b.vm).sort()).toEqual(fleet.libvirtVms);
  });

  it('read-only repository: the real cause (EROFS), not "ENOENT … mkdir chunks/xx" (Node\'s recursive mkdir hides it)', async () => {
    await overwrite(path.join(fleet.libvirtDir, 'images', 'vm01-data.raw'), 0, 3 * 1024 * 1024, 4242); // new chunks in folders not made yet
    await remountTmpfs(repoDir, 'ro');
    try {
      const result = await cli(env, 'backup', '--json');
      expect(result.code).toBe(1);
      expect(lines(result.stderr)).toEqual([`vmdedup: vm01: repository ${repoDir}: read-only file system (EROFS); the run stopped: 3 VMs not backed up (vm02, vm03, vm04)`]);
      const report = JSON.parse(result.stdout) as BackupJson;
      expect(report.backups).toEqual([]);
      expect(report.failures.map((f) => [f.vm, f.attempted])).toEqual([['vm01', true], ['vm02', false], ['vm03', false], ['vm04', false]]);
    } finally {
      await remountTmpfs(repoDir, 'rw');
    }
    expect((await cli(env, 'backup')).code).toBe(0);
  });
});

describe('vmdedup backup when the catalog database is killed mid-run', () => {
  let pgHome: string;
  afterAll(async () => {
    if (pgHome) await stopEmbeddedCatalog(pgHome).catch(() => undefined);
  });

  it('one line naming the VM and the cause, no stack trace, the JSON with what was saved, exit 1; the catalog names nothing the repository lacks', async () => {
    const home = await tempDir();
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 8, baseMiB: 8, configDiskMiB: 1, privateDiskMiB: 32, vmwareVms: 0 });
    // A PostgreSQL of its own, to kill: the shared test server stays up for the other tests.
    pgHome = await tempDir('vmdedup-pg-');
    const catalog = await ensureEmbeddedCatalog(pgHome);
    const env = { VMDEDUP_HOME: home, DATABASE_URL: catalog.url };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);

    const running = cli(env, 'backup', '--json');
    // Kill the server (postmaster and all) once the first image is recorded, while later VMs are being read.
    const watcher = new pg.Client({ connectionString: catalog.url });
    watcher.on('error', () => undefined);
    await watcher.connect();
    for (let tries = 0; ; tries++) {
      const { rows: [{ count }] } = await watcher.query<{ count: string }>('SELECT count(*) FROM "BackupImage"');
      if (Number(count) > 0) break;
      if (tries > 3000) throw new Error('no image was recorded');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const postmaster = Number((await fs.readFile(path.join(catalog.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    process.kill(postmaster, 'SIGKILL');
    const result = await running;
    await watcher.end().catch(() => undefined);

    expect(result.code).toBe(1);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    const problems = lines(result.stderr);
    // A batch whose recording failed is in the repository, not in the catalog (reconcile records it later); a batch
    // written after the backup's session connection died is withdrawn instead (a collection may have taken the run
    // for ended: nothing vouches for what it reused).
    for (const line of problems) expect(line).toMatch(/^vmdedup: vm\d\d: (catalog connection lost \(.+\); backup image \S+ is in the repository, not in the catalog|not recorded, withdrawn from the repository: catalog connection lost \(.+\))/);
    expect(problems.filter((line) => line.includes('the run stopped: '))).toHaveLength(1);
    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups.length).toBeGreaterThan(0);
    expect(report.stopped).toMatchObject({ source: 'kvm', error: expect.stringMatching(/^(not recorded, withdrawn from the repository: )?catalog connection lost \(/) });
    expect([...report.backups.map((b) => b.vm), ...report.failures.map((f) => f.vm)].sort()).toEqual(fleet.libvirtVms);
    expect(report.failures.filter((f) => f.attempted).every((f) => f.backupId || /withdrawn from the repository/.test(f.error))).toBe(true);
    expect(report.failures.some((f) => !f.attempted)).toBe(true);

    // The catalog back (a real restart after the crash): everything it names is in the repository.
    for (let tries = 0; ; tries++) {
      try {
        await ensureEmbeddedCatalog(pgHome);
        break;
      } catch (err) {
        if (tries > 20) throw err;
        await new Promise((resolve) => setTimeout(resolve, 500)); // the killed server's backends are still exiting
      }
    }
    // (Records committed just before the crash may be gone: they are committed without waiting for the WAL
    // flush, and the repository, where every saved image is, is the truth the catalog is rebuilt from.)
    await catalogMatchesRepository(env, path.join(home, 'repository'));
    const images = await repositoryImageIds(path.join(home, 'repository'));
    for (const backupId of [...report.backups.map((b) => b.backupId), ...report.failures.flatMap((f) => f.backupId ?? [])]) expect(images).toContain(backupId);
  });
});
