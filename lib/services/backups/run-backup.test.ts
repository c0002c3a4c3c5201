import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createMigratedCatalog, tempDir } from '../../../test/helpers';
import { writeData } from '../../demo/fleet';
import { FaultyBlobStore } from '../../engine/repository/faulty-blob-store';
import { FsBlobStore } from '../../engine/repository/fs-blob-store';
import { Repository } from '../../engine/repository/repository';
import { runBackup } from './run-backup';
import { BACKUP_SESSION_LOCK, openBackupSession, vmClaimKeys } from '../../catalog/gc-coordination';
import { addSource } from '../sources/add-source';

const MiB = 1024 * 1024;

async function source(root: string, names: string[]): Promise<string> {
  await fs.mkdir(root, { recursive: true });
  for (const [index, name] of names.entries()) {
    await writeData(path.join(root, `${name}.raw`), 2 * MiB, 300 + index + root.length);
    await fs.writeFile(path.join(root, `${name}.xml`), `<domain><name>${name}</name><uuid>${name}</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='${name}.raw'/><target dev='vda'/></disk></devices></domain>`);
  }
  return root;
}

const pools: pg.Pool[] = [];
afterAll(async () => { await Promise.all(pools.map((pool) => pool.end())); });

/** A migrated catalog (its Prisma client for lookups: the caller disconnects it), a pool of `max` on it, a scratch home. */
async function catalogAndHome(max: number) {
  const { url, db } = await createMigratedCatalog();
  const sql = new pg.Pool({ connectionString: url, max });
  pools.push(sql);
  return { sql, db, home: await tempDir() };
}

describe('runBackup under a repository failure', () => {
  it('stops the whole run, across sources, and reports every VM it did not reach', async () => {
    const { sql, db, home } = await catalogAndHome(2);
    await db.$disconnect();
    await addSource(sql, { name: 'a', type: 'libvirt', path: await source(path.join(home, 'a'), ['a1', 'a2', 'a3']) });
    await addSource(sql, { name: 'b', type: 'libvirt', path: await source(path.join(home, 'b'), ['b1', 'b2']) });
    // The disk is full from the third chunk on: a1's two chunks fit. Small disks of later VMs are stored ahead
    // (backupVms' storeAhead), so the full disk may meet a1's second chunk first; wherever it meets the run, it
    // stops there, and every VM after it, in this source and the next, is reported not reached.
    const store = new FaultyBlobStore(new FsBlobStore(path.join(home, 'repository')), { faults: [{ op: 'put', keyPrefix: 'chunks/', call: 3, error: 'ENOSPC', persistent: true }] });
    const repo = await Repository.openOrInit(store, { blockSize: MiB });

    const report = await runBackup(sql, { repo });
    const cause = `repository ${store.location}: no space left on device (ENOSPC)`;
    const order = [['a', 'a1'], ['a', 'a2'], ['a', 'a3'], ['b', 'b1'], ['b', 'b2']];
    const stopAt = order.findIndex(([, vm]) => vm === report.stopped?.vm);
    expect(stopAt, JSON.stringify(report.stopped)).toBeGreaterThanOrEqual(0);
    expect(stopAt).toBeLessThanOrEqual(2); // a1, a2 or a3: the full disk is met in source a
    const [stopSource, stopVm] = order[stopAt];
    expect(report.backups.map((b) => b.vm)).toEqual(order.slice(0, stopAt).map(([, vm]) => vm));
    expect(report.stopped).toEqual({ vm: stopVm, source: stopSource, error: cause });
    expect(report.failures.map((f) => [f.source, f.vm, f.attempted, f.error])).toEqual([
      [stopSource, stopVm, true, cause],
      ...order.slice(stopAt + 1).map(([src, vm]) => [src, vm, false, `not backed up: the run stopped at ${stopVm} (${cause})`]),
    ]);
    const { rows } = await sql.query<{ name: string }>('SELECT v."name" FROM "BackupImage" i JOIN "Vm" v ON v."id" = i."vmId"');
    expect(rows.map((row) => row.name)).toEqual(report.backups.map((b) => b.vm));
  });
});

describe('runBackup: which VMs', () => {
  it('one backup per VM at a time: a VM another run holds is left to it, and backed up once that run ends; a retry backs up exactly the VMs it names, by source', async () => {
    const { sql, db, home } = await catalogAndHome(3);
    await addSource(sql, { name: 'a', type: 'libvirt', path: await source(path.join(home, 'a'), ['v1', 'v2']) });
    await addSource(sql, { name: 'b', type: 'libvirt', path: await source(path.join(home, 'b'), ['v1']) });
    const repo = await Repository.openOrInit(new FsBlobStore(path.join(home, 'repository')), { blockSize: MiB });
    const a = await db.source.findUniqueOrThrow({ where: { name: 'a' } });
    await db.$disconnect();
    // Another run (its session) is backing up a/v1: b's v1, the same name in another source, is not held.
    const other = await openBackupSession(sql);
    expect(await other.claimVms([`${a.id}/v1`])).toEqual(new Set());
    const first = await runBackup(sql, { repo });
    expect(first.backups.map((b) => `${b.source}/${b.vm}`).sort()).toEqual(['a/v2', 'b/v1']);
    expect(first.failures).toEqual([expect.objectContaining({ source: 'a', vm: 'v1', attempted: false, error: 'not backed up: another run is backing it up right now' })]);
    await other.close();
    const second = await runBackup(sql, { repo, source: 'a', vms: ['v1'] });
    expect(second.backups.map((b) => `${b.source}/${b.vm}`)).toEqual(['a/v1']);

    // A run killed while it held a/v1 (its connection gone, its row and claims left): the next run takes v1 over.
    const killed = await openBackupSession(sql);
    expect(await killed.claimVms([`${a.id}/v1`])).toEqual(new Set());
    const { rows: ended } = await sql.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, [BACKUP_SESSION_LOCK, killed.id]);
    expect(ended).toEqual([{ ok: true }]);
    for (let i = 0; i < 50 && (await sql.query('SELECT 1 FROM pg_locks WHERE locktype = $1 AND classid = $2 AND objid = $3', ['advisory', BACKUP_SESSION_LOCK, killed.id])).rows.length; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await sql.query('SELECT 1 FROM "VmClaim" WHERE "sessionId" = $1', [killed.id])).rows).toHaveLength(1);
    const afterKill = await runBackup(sql, { repo, source: 'a', vms: ['v1'] });
    expect(afterKill.backups.map((b) => `${b.source}/${b.vm}`)).toEqual(['a/v1']);
    await killed.close().catch(() => undefined);

    // A pool's worth of claims (two per VM) in one session: rows, not locks (PostgreSQL's lock table holds 64 per connection).
    const pool = await openBackupSession(sql);
    expect((await pool.claimVms(Array.from({ length: 20_000 }, (_, i) => `pool/vm${i}`))).size).toBe(0);
    await pool.close();
    expect((await sql.query('SELECT count(*)::int AS n FROM "VmClaim"')).rows).toEqual([{ n: 0 }]);

    const retry = await runBackup(sql, { repo, onlyVms: [{ source: 'b', vm: 'v1' }, { source: 'a', vm: 'removed' }, { source: 'c', vm: 'v2' }] });
    expect(retry.backups.map((b) => `${b.source}/${b.vm}`)).toEqual(['b/v1']);
    expect(retry.warnings.join()).toMatch(/not in their sources any more, not backed up: a\/removed, c\/v2/);
  }, 60_000);
});

describe('runBackup: one backup per VM at a time, across sources (adversarial)', () => {
  it('a VM whose folder two sources lead to is not backed up by two runs at once (one per source)', async () => {
    const { sql, db, home } = await catalogAndHome(4);
    const folder = await source(path.join(home, 'vms'), ['v1', 'v2']);
    await addSource(sql, { name: 'a', type: 'libvirt', path: folder });
    // The same folder registered again under another name (nothing refuses it), through a symlink.
    await fs.symlink(folder, path.join(home, 'again'));
    await addSource(sql, { name: 'again', type: 'libvirt', path: path.join(home, 'again') });
    const repo = await Repository.openOrInit(new FsBlobStore(path.join(home, 'repository')), { blockSize: MiB });
    const a = await db.source.findUniqueOrThrow({ where: { name: 'a' } });
    await db.$disconnect();
    // A run of source a is backing up v1 (it holds what such a run holds).
    const other = await openBackupSession(sql);
    expect(await other.claimVms(vmClaimKeys(a.id, { name: 'v1', configPath: await fs.realpath(path.join(folder, 'v1.xml')) }))).toEqual(new Set());
    const second = await runBackup(sql, { repo, source: 'again' });
    expect(second.backups.map((b) => b.vm), 'v1 is being read by the run of source a').toEqual(['v2']);
    expect(second.failures).toEqual([expect.objectContaining({ vm: 'v1', attempted: false, error: 'not backed up: another run is backing it up right now' })]);
    // What the second run took of v1 it let go: once the first run ends, a third takes v1.
    await other.close();
    const third = await runBackup(sql, { repo, source: 'a', vms: ['v1'] });
    expect(third.backups.map((b) => b.vm)).toEqual(['v1']);
  }, 60_000);
});
