/**
 * The repository is the truth, the catalog an index: a missing or different repository is refused (never a
 * silent new one), a lost record comes back by itself, and `catalog rebuild` is atomic and serialised with
 * backups.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFleet, overwrite, type Fleet } from '../lib/demo/fleet';
import { cli, createTestDatabase, projectRoot, repositoryImageIds, storedImage, tempDir } from './helpers';

type BackupsJson = { backups: { backupId: string; vm: string }[] };

const listImages = (repo: string) => repositoryImageIds(repo).catch(() => [] as string[]);

async function catalogImages(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ id: string }>('SELECT "id" FROM "BackupImage" ORDER BY "id"')).rows.map((r) => r.id);
  } finally {
    await client.end();
  }
}

async function sqlOn(url: string, text: string, values: unknown[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(text, values).finally(() => client.end());
}

const smallFleet = (dir: string) => buildFleet({ dir, bases: 1, clonesPerBase: 2, baseMiB: 4, configDiskMiB: 1, privateDiskMiB: 2, vmwareVms: 0 });

describe('repository identity', () => {
  let home: string;
  let env: Record<string, string>;
  let repo: string;

  beforeAll(async () => {
    home = await tempDir();
    const fleet = await smallFleet(path.join(home, 'fleet'));
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    repo = path.join(home, 'repository');
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    // First run: no repository recorded, no backups, no folder: the first backup creates it.
    const first = await cli(env, 'backup');
    expect(first.code, first.stderr).toBe(0);
    await fs.access(path.join(repo, 'config.json'));
  });

  it('refuses a missing repository (an unmounted disk) with a line naming it, and never starts a new one', async () => {
    await fs.rename(repo, `${repo}.unmounted`);
    await fs.mkdir(repo); // the empty mount point
    try {
      for (const args of [['backup', '--json'], ['stats'], ['restore', 'vm01', '--target', path.join(home, 'out'), '--json']]) {
        const result = await cli(env, ...args);
        expect(result.code, `${args[0]}: ${result.stderr}`).toBe(1);
        expect(result.stdout).toBe('');
        expect(result.stderr.trim().split('\n')).toHaveLength(1);
        expect(result.stderr).toContain(`no repository at ${repo} (config.json is missing), but this catalog indexes repository`);
        expect(await fs.readdir(repo)).toEqual([]);
      }
      // Creating one instead of the lost one is explicit, and says what it costs.
      const init = await cli(env, 'repository', 'init');
      expect(init.code).toBe(2);
      expect(init.stderr).toMatch(/this catalog indexes repository .* --replace/);
      expect(await fs.readdir(repo)).toEqual([]);
    } finally {
      await fs.rm(repo, { recursive: true });
      await fs.rename(`${repo}.unmounted`, repo);
    }
    expect((await cli(env, 'backup')).code).toBe(0);
  });

  it('refuses another repository than the one the catalog indexes', async () => {
    const other = path.join(home, 'other-repository');
    const otherEnv = { VMDEDUP_HOME: home, VMDEDUP_REPOSITORY: other, DATABASE_URL: await createTestDatabase() };
    const init = await cli(otherEnv, 'repository', 'init');
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/created repository [0-9a-f-]{36} at /);
    const { id: otherId } = JSON.parse(await fs.readFile(path.join(other, 'config.json'), 'utf8')) as { id: string };
    for (const args of [['backup'], ['catalog', 'rebuild']]) {
      const result = await cli({ ...env, VMDEDUP_REPOSITORY: other }, ...args);
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toContain(`the repository at ${other} is not the one this catalog indexes (it is ${otherId}`);
    }
    expect(await listImages(other)).toEqual([]);
    // `catalog rebuild --adopt` is the explicit switch (here: the other catalog takes this test's repository).
    const switched = { ...otherEnv, VMDEDUP_REPOSITORY: repo };
    expect((await cli(switched, 'catalog', 'rebuild')).code).toBe(1);
    const adopted = await cli(switched, 'catalog', 'rebuild', '--adopt');
    expect(adopted.code, adopted.stderr).toBe(0);
    expect(adopted.stdout).toContain(`catalog rebuilt from ${repo}: ${(await listImages(repo)).length} backup images`);
    expect((await cli(switched, 'backup')).code).toBe(0);
    expect((await cli(otherEnv, 'backup')).code).toBe(1);
  });

  it('creates a repository on a first run only in an empty folder, and init never takes over a non-empty one', async () => {
    const busy = path.join(home, 'busy');
    await fs.mkdir(busy);
    await fs.writeFile(path.join(busy, 'notes.txt'), 'not a repository\n');
    const fresh = { VMDEDUP_HOME: home, VMDEDUP_REPOSITORY: busy, DATABASE_URL: await createTestDatabase() };
    expect((await cli(fresh, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', path.join(home, 'fleet', 'libvirt'))).code).toBe(0);
    const backup = await cli(fresh, 'backup');
    expect(backup.code).toBe(1);
    expect(backup.stderr).toContain(`no repository at ${busy} (config.json is missing) and the folder is not empty`);
    const init = await cli(fresh, 'repository', 'init');
    expect(init.code).toBe(2);
    expect(init.stderr).toContain(`${busy} is not empty and holds no repository`);
    expect(await fs.readdir(busy)).toEqual(['notes.txt']);
  });

  it('starts over explicitly with repository init --replace: the catalog forgets the lost repository\'s backups', async () => {
    const replacement = path.join(home, 'new-disk');
    const moved = { ...env, VMDEDUP_REPOSITORY: replacement };
    const result = await cli(moved, 'repository', 'init', '--replace');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/the catalog forgot \d+ backup images of repository/);
    expect(JSON.parse((await cli(moved, 'backups', '--json')).stdout)).toEqual({ backups: [] });
    const backup = await cli(moved, 'backup', '--json');
    expect(backup.code, backup.stderr).toBe(0);
    expect((JSON.parse(backup.stdout) as { totals: { bytesRead: number } }).totals.bytesRead).toBeGreaterThan(0);
    // and now the old one is the stranger
    expect((await cli(env, 'backup')).code).toBe(1);
  });
});

describe('reconcile: a lost record comes back by itself', () => {
  let home: string;
  let env: Record<string, string>;
  let repo: string;
  let fleet: Fleet;

  beforeAll(async () => {
    home = await tempDir();
    fleet = await smallFleet(path.join(home, 'fleet'));
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    repo = path.join(home, 'repository');
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(env, 'backup')).code).toBe(0);
    await overwrite(path.join(fleet.libvirtDir, 'images', 'vm01-data.raw'), 4096, 4096, 3);
    expect((await cli(env, 'backup')).code).toBe(0);
  });

  it('records images the repository holds and the catalog lost, on the next backup and before stats', async () => {
    const all = await listImages(repo);
    expect(all).toHaveLength(4);
    expect(await catalogImages(env.DATABASE_URL)).toEqual(all);
    const common = (await cli(env, 'common-disks', '--json')).stdout;
    // Lose the newest record (a backup killed before recording) and an older one (the catalog died mid-run).
    const [older, , , newest] = all;
    await sqlOn(env.DATABASE_URL, 'DELETE FROM "BackupImage" WHERE "id" = ANY($1)', [[older, newest]]);
    expect(await catalogImages(env.DATABASE_URL)).toHaveLength(2);

    const stats = await cli(env, 'stats', '--json');
    expect(stats.code, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)).toMatchObject({ backups: 4 });
    expect(stats.stderr).toMatch(/recorded 2 backup images that the repository held and the catalog lacked/);
    expect(await catalogImages(env.DATABASE_URL)).toEqual(all);
    // The older image, recorded last, adds history only: who uses which disk is as the newest backup said.
    expect((await cli(env, 'common-disks', '--json')).stdout).toBe(common);

    await sqlOn(env.DATABASE_URL, 'DELETE FROM "BackupImage" WHERE "id" = $1', [newest]);
    const backup = await cli(env, 'backup', '--vm', 'vm02', '--json');
    expect(backup.code, backup.stderr).toBe(0);
    const known = JSON.parse((await cli(env, 'backups', '--json')).stdout) as BackupsJson;
    expect(known.backups.map((b) => b.backupId)).toContain(newest);
    expect(known.backups).toHaveLength(5);
  });

  it('restores a backup whose record was lost', async () => {
    const vm01 = (JSON.parse((await cli(env, 'backups', '--vm', 'vm01', '--json')).stdout) as BackupsJson).backups[0].backupId;
    await sqlOn(env.DATABASE_URL, 'DELETE FROM "BackupImage" WHERE "id" = $1', [vm01]);
    const target = path.join(home, 'restored');
    const result = await cli(env, 'restore', 'vm01', '--backup', vm01, '--target', target, '--policy', 'overwrite', '--confirm-drift', '--json');
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'restored', backupId: vm01 });
    const [restored, live] = await Promise.all([fs.readFile(path.join(target, 'images', 'vm01-data.raw')), fs.readFile(path.join(fleet.libvirtDir, 'images', 'vm01-data.raw'))]);
    expect(restored.equals(live)).toBe(true);
  });

  it('reports an unreadable manifest in one line and records the others', async () => {
    await fs.writeFile(path.join(repo, 'images', '20200101T000000Z-0bad00.json'), '{"formatVersion": 1, "id": "20200101T000000Z-0bad00", "vm": ');
    const newest = (await listImages(repo)).at(-1)!;
    await sqlOn(env.DATABASE_URL, 'DELETE FROM "BackupImage" WHERE "id" = $1', [newest]);
    const backup = await cli(env, 'backup', '--vm', 'vm02');
    expect(backup.code, backup.stderr).toBe(0);
    const warnings = backup.stderr.trim().split('\n');
    expect(warnings.filter((line) => line.includes('20200101T000000Z-0bad00'))).toEqual([
      expect.stringMatching(/^warning: backup image 20200101T000000Z-0bad00 is in the repository but cannot be recorded in the catalog: backup image 20200101T000000Z-0bad00 is unreadable: /),
    ]);
    expect(await catalogImages(env.DATABASE_URL)).toContain(newest);

    // A rebuild skips it the same way: one line, every other image recorded, exit 1 (the repository is damaged).
    const fresh = { ...env, DATABASE_URL: await createTestDatabase() };
    const rebuilt = await cli(fresh, 'catalog', 'rebuild');
    expect(rebuilt.code).toBe(1);
    expect(rebuilt.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^vmdedup: backup image 20200101T000000Z-0bad00 skipped: /)]);
    const good = (await listImages(repo)).filter((id) => id !== '20200101T000000Z-0bad00');
    expect(rebuilt.stdout).toContain(`${good.length} backup images, 1 sources; 1 unreadable images skipped`);
    expect(await catalogImages(fresh.DATABASE_URL)).toEqual(good);
    await fs.rm(path.join(repo, 'images', '20200101T000000Z-0bad00.json'));
  });
});

describe('catalog rebuild: one transaction, serialised with backups', () => {
  let home: string;
  let env: Record<string, string>;
  let repo: string;
  let fleet: Fleet;
  const children: ChildProcess[] = [];
  afterAll(() => { for (const child of children) child.kill('SIGKILL'); });

  const spawnCli = (...args: string[]) => {
    const child = spawn(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    const exit = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
    return { child, exit };
  };

  beforeAll(async () => {
    home = await tempDir();
    fleet = await smallFleet(path.join(home, 'fleet'));
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    repo = path.join(home, 'repository');
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(env, 'backup')).code).toBe(0);
    // A repository of a few hundred images (copies of the real ones under new ids): rebuilds that take a while.
    const images = path.join(repo, 'images');
    const originals = await Promise.all((await listImages(repo)).map(async (id) => (await storedImage(repo, id)).json as { id: string; createdAt: string }));
    let at = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < 600; i++) {
      const created = new Date((at += 1000));
      const id = `${created.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
      await fs.writeFile(path.join(images, `${id}.json`), JSON.stringify({ ...originals[i % originals.length], id, createdAt: created.toISOString() }));
    }
    const rebuilt = await cli(env, 'catalog', 'rebuild');
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(await catalogImages(env.DATABASE_URL)).toEqual(await listImages(repo));
  });

  it('never shows a partial catalog while it runs, and a rebuild killed midway leaves the catalog as it was', async () => {
    const before = await catalogImages(env.DATABASE_URL);
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      const { child, exit } = spawnCli('catalog', 'rebuild');
      const seen = new Set<number>();
      let rebuilding = false;
      // Watch until the rebuild holds the index lock (it is at work), then a little longer, then kill it.
      for (const end = Date.now() + 20_000; Date.now() < end;) {
        seen.add(Number((await client.query('SELECT count(*) AS n FROM "BackupImage"')).rows[0].n));
        const { rows } = await client.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted AND objid = $1`, [0x766d6469]);
        if (rows.length > 0 && !rebuilding) {
          rebuilding = true;
          setTimeout(() => child.kill('SIGKILL'), 150);
        }
        if (child.exitCode !== null || child.signalCode !== null) break;
        // The old rebuild (TRUNCATE, then image by image) showed its partial catalog right away.
        if ([...seen].some((n) => n < before.length)) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const ended = await exit;
      expect([...seen]).toEqual([before.length]);
      expect(ended.signal).toBe('SIGKILL');
    } finally {
      await client.end();
    }
    // The server rolled the killed transaction back.
    expect(await catalogImages(env.DATABASE_URL)).toEqual(before);
  });

  it('overlapping backups: both finish, and the catalog holds every image of the repository', async () => {
    const results: string[] = [];
    for (let round = 0; round < 3; round++) {
      // Each round changes a disk so the backup writes and records new images while the rebuild runs.
      await overwrite(path.join(fleet.libvirtDir, 'images', 'vm02-data.raw'), 8192 * (round + 1), 4096, 100 + round);
      const rebuild = spawnCli('catalog', 'rebuild');
      await new Promise((resolve) => setTimeout(resolve, [50, 250, 500][round]));
      const backup = spawnCli('backup');
      const [r, b] = await Promise.all([rebuild.exit, backup.exit]);
      expect(r.code, r.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      expect(await catalogImages(env.DATABASE_URL)).toEqual(await listImages(repo));
      results.push(`round ${round + 1}: ok`);
    }
    expect(results).toHaveLength(3);
  });
});
