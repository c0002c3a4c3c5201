/**
 * Adversarial tests of retention and garbage collection (lib/engine/gc/README.md): each one states a scenario the
 * protocol must survive and fails where it does not.
 */
import { type Hooks, type TokenFleet, backup, block, chunkKeyOf, closeTokenFleets, hookedRepository, restoredDigests, sha, tokenFleet, writeDisk } from '../../../test/token-fleet';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CATALOG_INDEX_LOCK } from '../../catalog/locks';
import { BACKUP_SESSION_LOCK, GC_RUN_LOCK, acquireGcLease, openBackupSession } from '../../catalog/gc-coordination';
import { reconcileCatalog } from '../backups/reconcile-catalog';
import { runBackup } from '../backups/run-backup';
import { runGarbageCollection } from './collect-garbage';
import { pruneBackups } from './prune-backups';

type Env = TokenFleet;
afterAll(closeTokenFleets);
const setup = (vms: string[]) => tokenFleet(vms);

const until = async (what: () => Promise<boolean>, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('gc adversarial', () => {
  it('a backup whose session connection was lost (catalog restart, network cut) must not go on naming chunks gc then removes', async () => {
    const env = await setup(['a']);
    await backup(env);
    await writeDisk(env.dir, 'a', [1, 62, 63]);
    await backup(env);
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    // a goes back to its first content: blocks 2 and 3 are in the repository, unreferenced (garbage).
    await writeDisk(env.dir, 'a', [1, 2, 3]);
    const watched = chunkKeyOf(2);
    let reached!: () => void;
    const reachedHold = new Promise<void>((resolve) => { reached = resolve; });
    let release!: () => void;
    const hold = new Promise<void>((resolve) => { release = resolve; });
    env.hooks.has = async (key) => {
      if (key === watched) { reached(); await hold; }
    };
    // The backup found nothing condemned when it began; it is about to find block 2 in the repository and reuse it.
    const running = runBackup(env.sql, { repo: env.hooked, rereadAfterDays: 30 });
    await reachedHold;
    // The session's own connection drops (a catalog restart, `vmdedup db stop/start`, a firewall idle cut). The
    // pool reconnects for every other query, so the backup goes on; only its session lock is gone.
    await env.sql.query('SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = $1 AND classid = $2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())', ['advisory', BACKUP_SESSION_LOCK]);
    const collected = await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 10_000, pollMs: 20 });
    release();
    const report = await running;
    // Either the backup notices it lost its session and fails, or gc waited and spared what it reused: an image
    // reported as saved must restore.
    for (const b of report.backups) {
      await expect(restoredDigests(env, b.backupId), `gc removed ${collected.removedChunks} chunks the running backup then named`).resolves.toBeDefined();
    }
    // And nothing it wrote is left behind naming what gc removed: every image the repository holds restores.
    for (const id of await env.repo.backupImageIds()) await expect(restoredDigests(env, id), id).resolves.toBeDefined();
    if (collected.removedChunks > 0) expect(report.failures.map((f) => f.error).join('\n')).toMatch(/withdrawn from the repository: catalog connection lost \(the backup session: its lock ended with its connection/);
  }, 60_000);

  it('prune racing a reconcile (any backup, scan or prune starts with one) must not leave the catalog naming removed images', async () => {
    const env = await setup(['a']);
    const first = await backup(env);
    await writeDisk(env.dir, 'a', [1, 72, 73]);
    await backup(env);
    const firstId = first.backups[0].backupId;
    // prune forgets the image in the catalog, then removes its manifest: hold it just before the removal.
    let reached!: () => void;
    const reachedDelete = new Promise<void>((resolve) => { reached = resolve; });
    let release!: () => void;
    const hold = new Promise<void>((resolve) => { release = resolve; });
    env.hooks.delete = async (key) => {
      if (key.startsWith('images/')) { reached(); await hold; }
    };
    const pruning = pruneBackups(env.sql, { repo: env.hooked, policy: { last: 1 }, timeZone: 'UTC' });
    await reachedDelete;
    // Meanwhile a backup (or scan, or another prune) reconciles: it lists the repository (the manifest is still
    // there), reads it, and waits for the index lock prune holds.
    const reconciling = reconcileCatalog(env.sql, { repo: env.repo });
    await until(async () => (await env.sql.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1`, [CATALOG_INDEX_LOCK])).rowCount! > 0);
    release();
    await pruning;
    await reconciling;
    const { rows } = await env.sql.query<{ id: string }>('SELECT "id" FROM "BackupImage" ORDER BY "id"');
    const inRepo = await env.repo.backupImageIds();
    expect(await env.repo.hasBackupImage(firstId)).toBe(false);
    expect(rows.map((r) => r.id), 'the catalog names an image whose manifest prune removed').toEqual(inRepo);
  }, 60_000);
  it('a gc starting (recover) while a backup rescues a stored disk and its chunks: neither fails with a deadlock', async () => {
    const env = await setup(['a']);
    // Rows an earlier collection left pending (it ran out of --wait): a stored disk first, then its chunks, as
    // condemn inserts them (disks, then chunks). A backup that reuses the stored disk rescues [its chunks…, the disk]
    // in key order ("chunks/…" < "disks/…"); the next collection's recover deletes every pending row in table order.
    const d = `disks/${'d'.repeat(64)}.json`;
    const c1 = `chunks/11/${'1'.repeat(64)}`;
    const c2 = `chunks/22/${'2'.repeat(64)}`;
    const earlier = (await acquireGcLease(env.sql))!;
    await earlier.condemn([{ key: d, bytes: 1 }, { key: c2, bytes: 1 }, { key: c1, bytes: 1 }]);
    await earlier.release();
    const session = await openBackupSession(env.sql);
    // Another backup's rescue holds c2 for a moment (any short transaction on the row does).
    const other = await env.sql.connect();
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM "CondemnedBlob" WHERE "key" = $1 FOR UPDATE', [c2]);
    const waiting = async (n: number) => (await env.sql.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`)).rowCount! >= n;
    const next = (await acquireGcLease(env.sql))!;
    const recovering = next.recover(async () => undefined);
    await until(() => waiting(1));
    const rescuing = session.rescue([c1, c2, d], async () => true);
    await until(() => waiting(2));
    await other.query('COMMIT');
    other.release();
    const [r, s] = await Promise.allSettled([recovering, rescuing]);
    await next.release();
    await session.close();
    expect([r.status, s.status], JSON.stringify([r, s].map((x) => (x.status === 'rejected' ? String(x.reason) : 'ok')))).toEqual(['fulfilled', 'fulfilled']);
  }, 60_000);

  it('prune --source with a source that does not exist is refused, like --vm', async () => {
    const env = await setup(['a']);
    await backup(env);
    await expect(pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, source: 'no-such-source', timeZone: 'UTC' })).rejects.toThrow(/no-such-source/);
  }, 60_000);
  it('a gc whose connection was lost (its run lock gone) must not sweep rows a second gc condemned while a backup it never waited for runs', async () => {
    const env = await setup(['a']);
    await backup(env);
    await writeDisk(env.dir, 'a', [1, 62, 63]);
    await backup(env);
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    await writeDisk(env.dir, 'a', [1, 2, 3]); // blocks 2 and 3 (and their old stored disk) are garbage, and needed again
    const gate = () => {
      let open!: () => void; let reached!: () => void;
      const opened = new Promise<void>((resolve) => { open = resolve; });
      const arrived = new Promise<void>((resolve) => { reached = resolve; });
      return { open, arrived, wait: async () => { reached(); await opened; } };
    };
    // gc A pauses at its re-mark (its second listing of images/).
    const aHooks: Hooks = {};
    const aRepo = await hookedRepository(env.store, aHooks);
    const atRemark = gate();
    let imageLists = 0;
    aHooks.list = async (prefix) => { if (prefix === 'images/' && ++imageLists === 2) await atRemark.wait(); };
    const gcA = runGarbageCollection(env.sql, { repo: aRepo, waitMs: 10_000, pollMs: 20 });
    await atRemark.arrived;
    // A's connection drops: its run lock and nothing else (it goes on with the pool's other connections).
    await env.sql.query(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, [GC_RUN_LOCK]);
    // A backup starts after A condemned: it rescues what it reuses, and pauses before writing its image.
    const sHooks: Hooks = {};
    const sRepo = await hookedRepository(env.store, sHooks);
    const beforeImage = gate();
    sHooks.put = async (key) => { if (key.startsWith('images/')) await beforeImage.wait(); };
    const backingUp = runBackup(env.sql, { repo: sRepo, rereadAfterDays: 30 });
    await beforeImage.arrived;
    // gc B can run now (the run lock is free): it condemns again what the backup reuses, and leaves it pending.
    const gcB = await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 0 });
    expect(gcB.pendingChunks).toBeGreaterThan(0);
    atRemark.open();
    const a = await gcA.catch((err) => err as Error);
    beforeImage.open();
    const report = await backingUp;
    for (const b of report.backups) {
      await expect(restoredDigests(env, b.backupId), `gc A: ${JSON.stringify(a)}`).resolves.toBeDefined();
    }
  }, 60_000);
});
