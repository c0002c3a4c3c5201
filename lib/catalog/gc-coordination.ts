/**
 * The catalog's part of garbage collection's protocol (lib/engine/gc/README.md): the generation, the backup
 * sessions running, and the condemned keys with their row locks. Liveness comes from PostgreSQL session advisory
 * locks, never from a clock: a backup holds one on its session's id for as long as its process lives, so a run
 * killed with -9 is seen as ended the moment its connection closes.
 */
import os from 'node:os';
import type pg from 'pg';
import type { Condemned, GcCoordinator, RunningSession } from '../engine/gc/collect';
import type { CondemnedKeys } from '../engine/gc/reuse-guard';
import { type CatalogSql, CatalogConnectionLost, inTransaction, retryingDeadlock } from './db';

/** Advisory lock class of backup sessions: (BACKUP_SESSION_LOCK, session id). */
export const BACKUP_SESSION_LOCK = 0x766d6273; // "vmbs"
/** One collection at a time (a session lock of its connection). */
export const GC_RUN_LOCK = 0x766d6763; // "vmgc"
/**
 * What a backup of a VM claims: the VM (its source and name) and its config file (canonical path). The config too: two
 * sources may lead to one folder (registered twice, or one inside the other), and a VM renamed between two runs' scans
 * is one VM under two names; either way both runs would read the same disks at once.
 */
export function vmClaimKeys(sourceId: string, vm: { name: string; configPath: string }): string[] {
  return [`${sourceId}/${vm.name}`, `config:${vm.configPath}`];
}

const HOST = os.hostname();

/**
 * A connection held for a whole run: its advisory locks live exactly as long as it. `confirm` proves, by a round
 * trip on it, that the connection (so every lock taken on it) has lasted until now; once it failed it always fails.
 */
type HeldClient = { client: pg.PoolClient; confirm: (what: string) => Promise<void>; release: () => void };

async function holdClient(sql: CatalogSql): Promise<HeldClient> {
  const client = await sql.connect();
  let lost: Error | undefined;
  client.on('error', (err) => { lost ??= err; });
  return {
    client,
    async confirm(what) {
      if (!lost) await client.query('SELECT 1').catch((err: Error) => { lost ??= err; });
      if (lost) throw new CatalogConnectionLost(new Error(`${what}: its lock ended with its connection (${lost.message})`));
    },
    release: () => client.release(lost ?? true), // destroyed: its session locks end with it
  };
}

export type BackupSession = CondemnedKeys & {
  /** Clears the damaged keys the run stored again. */
  healed(keys: string[]): Promise<void>;
  id: number; generation: number;
  /** Proves the session's lock held from its start until now (a CatalogConnectionLost when it did not: a collection
   *  may then have taken it for ended, so nothing the run reused is vouched for). */
  confirmAlive(): Promise<void>;
  /**
   * Claims the VMs (their keys: vmClaimKeys) for this run until it closes; returns the keys another live run holds
   * now, whose VMs this one must not back up (one backup per VM at a time, across runs, workers and hosts; the
   * claims of a process killed are taken over, since its session's lock ended with its connection).
   */
  claimVms(keys: string[]): Promise<Set<string>>;
  /** Lets go of claims this session holds (a VM it claimed in part and will not back up). */
  releaseVms(keys: string[]): Promise<void>;
  close(): Promise<void>;
};

/**
 * Registers a backup run: reads the generation (waiting for a condemnation being committed), takes its lock and
 * loads the keys condemned then, all in one transaction. Close it when the run has written its last image.
 */
export async function openBackupSession(sql: CatalogSql): Promise<BackupSession> {
  const held = await holdClient(sql);
  const { client } = held;
  let id: number;
  let generation: number;
  const keys = new Set<string>();
  const damaged = new Set<string>();
  try {
    await client.query('BEGIN');
    ({ rows: [{ generation }] } = await client.query<{ generation: number }>(`SELECT "generation" FROM "GcState" WHERE "id" = 'default' FOR SHARE`));
    ({ rows: [{ id }] } = await client.query<{ id: number }>('INSERT INTO "BackupSession" ("generation", "host", "pid") VALUES ($1, $2, $3) RETURNING "id"', [generation, HOST, process.pid]));
    await client.query('SELECT pg_advisory_lock($1, $2)', [BACKUP_SESSION_LOCK, id]);
    const { rows } = await client.query<{ key: string }>('SELECT "key" FROM "CondemnedBlob"');
    for (const row of rows) keys.add(row.key);
    const damagedRows = await client.query<{ key: string }>('SELECT "key" FROM "DamagedBlob"');
    for (const row of damagedRows.rows) damaged.add(row.key);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    held.release();
    throw err;
  }
  let closed = false;
  return {
    id, generation, keys, damaged,
    confirmAlive: () => held.confirm('the backup session'),
    async claimVms(vmKeys) {
      // Rows, not a lock per VM: a pool of 10,000 VMs would overflow PostgreSQL's lock table (64 per connection).
      const insert = async (keys: string[]) => new Set((await client.query<{ key: string }>(
        'INSERT INTO "VmClaim" ("key", "sessionId") SELECT unnest($1::text[]), $2 ON CONFLICT ("key") DO NOTHING RETURNING "key"', [keys, id])).rows.map((row) => row.key));
      const wanted = [...new Set(vmKeys)];
      const claimed = await insert(wanted);
      const rest = wanted.filter((key) => !claimed.has(key));
      if (rest.length === 0) return new Set();
      const { rows } = await client.query<{ key: string; sessionId: number }>('SELECT "key", "sessionId" FROM "VmClaim" WHERE "key" = ANY($1)', [rest]);
      const holders = new Map<number, string[]>();
      for (const row of rows) {
        if (row.sessionId === id) claimed.add(row.key);
        else holders.set(row.sessionId, [...(holders.get(row.sessionId) ?? []), row.key]);
      }
      // A holder whose lock is free is dead (killed, its connection lost): its claims are taken over.
      const orphaned: string[] = [];
      for (const [holder, keys] of holders) {
        const { rows: [{ free }] } = await client.query<{ free: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS free', [BACKUP_SESSION_LOCK, holder]);
        if (!free) continue;
        await client.query('SELECT pg_advisory_unlock($1, $2)', [BACKUP_SESSION_LOCK, holder]);
        await client.query('DELETE FROM "VmClaim" WHERE "sessionId" = $1', [holder]);
        orphaned.push(...keys);
      }
      if (orphaned.length) for (const key of await insert(orphaned)) claimed.add(key);
      return new Set(wanted.filter((key) => !claimed.has(key)));
    },
    async releaseVms(vmKeys) {
      if (vmKeys.length) await client.query('DELETE FROM "VmClaim" WHERE "sessionId" = $1 AND "key" = ANY($2)', [id, vmKeys]);
    },
    // Stored again by this run (durable: the run's images, written after, are): no longer damaged.
    healed: async (healedKeys) => {
      if (healedKeys.length) await sql.query('DELETE FROM "DamagedBlob" WHERE "key" = ANY($1)', [healedKeys]);
    },
    rescue: (asked, exists) => rescue(sql, asked, exists),
    finishRemoval: async (asked, remove) => { await finishRemoval(sql, asked, remove); },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await client.query('DELETE FROM "BackupSession" WHERE "id" = $1', [id]);
        await client.query('SELECT pg_advisory_unlock($1, $2)', [BACKUP_SESSION_LOCK, id]);
      } finally {
        held.release();
      }
    },
  };
}

async function rescue(sql: CatalogSql, asked: string[], exists: (keys: string[]) => Promise<boolean>): Promise<boolean> {
  return retryingDeadlock(() => inTransaction(sql, async (client) => {
    const { rows } = await client.query<{ key: string; deleting: boolean }>(
      'SELECT "key", "deleting" FROM "CondemnedBlob" WHERE "key" = ANY($1) ORDER BY "key" FOR UPDATE', [asked],
    );
    if (rows.some((row) => row.deleting)) return false;
    const present = new Set(rows.map((row) => row.key));
    // No longer condemned: spared, withdrawn, or removed. No one removes it without a row, so what exists stays.
    const gone = asked.filter((key) => !present.has(key));
    if (gone.length && !(await exists(gone))) return false;
    if (rows.length) await client.query('DELETE FROM "CondemnedBlob" WHERE "key" = ANY($1)', [[...present]]);
    return true;
  }));
}

/** Removes, under their row locks, the blobs of those keys being removed, with their catalog rows, then the rows. */
async function finishRemoval(sql: CatalogSql, keys: string[], remove: (keys: string[]) => Promise<void>, generation?: number): Promise<Condemned[]> {
  return retryingDeadlock(() => inTransaction(sql, async (client) => {
    const { rows } = await client.query<{ key: string; bytes: string }>(
      'SELECT "key", "bytes" FROM "CondemnedBlob" WHERE "key" = ANY($1) AND "deleting" AND ($2::int IS NULL OR "generation" = $2) ORDER BY "key" FOR UPDATE',
      [keys, generation ?? null],
    );
    if (rows.length === 0) return [];
    const locked = rows.map((row) => row.key);
    await remove(locked);
    const digests = locked.filter((key) => key.startsWith('disks/')).map((key) => key.slice(6, -5));
    if (digests.length) {
      // The fast path must never offer a stored disk that is gone.
      await client.query('DELETE FROM "DiskVersion" WHERE "digest" = ANY($1)', [digests]);
      await client.query('DELETE FROM "StoredDisk" s WHERE s."digest" = ANY($1) AND NOT EXISTS (SELECT 1 FROM "DiskSetEntry" e WHERE e."digest" = s."digest")', [digests]);
    }
    await client.query('DELETE FROM "CondemnedBlob" WHERE "key" = ANY($1)', [locked]);
    return rows.map((row) => ({ key: row.key, bytes: Number(row.bytes) }));
  }));
}

/** Deletes condemned rows matching `where` ($1, $2… from `params`), locking them in key order first: every
 *  statement that locks several of these rows locks them in that order, so none deadlocks with another. */
async function deleteRowsInKeyOrder(sql: CatalogSql, where: string, params: unknown[]): Promise<void> {
  await retryingDeadlock(() => sql.query(
    `DELETE FROM "CondemnedBlob" WHERE "key" IN (SELECT "key" FROM "CondemnedBlob" WHERE ${where} ORDER BY "key" FOR UPDATE)`, params,
  ));
}

export type GcLease = GcCoordinator & { release(): Promise<void> };

/** Takes the collection lock (one collection at a time), or undefined when another collection holds it. */
export async function acquireGcLease(sql: CatalogSql): Promise<GcLease | undefined> {
  const held = await holdClient(sql);
  const { client } = held;
  const { rows: [{ locked }] } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [GC_RUN_LOCK]);
  if (!locked) {
    held.release();
    return undefined;
  }
  const batches = async (where: string, remove: (keys: string[]) => Promise<void>) => {
    for (;;) {
      const { rows } = await sql.query<{ key: string }>(`SELECT "key" FROM "CondemnedBlob" WHERE "deleting" AND ${where} ORDER BY "key" LIMIT 500`);
      if (rows.length === 0) return;
      await finishRemoval(sql, rows.map((row) => row.key), remove);
    }
  };
  // The generation this collection condemned: it sweeps and spares only its own rows (another collection's, after
  // this one's lock was lost, are not its to touch).
  let mine: number | undefined;
  const confirm = () => held.confirm('the garbage collection');
  return {
    async recover(remove) {
      // Condemnations of a collection that stopped are withdrawn (this one decides afresh); removals it began are
      // finished, stored disks first (their chunks only after: a stored disk never outlives its chunks).
      await deleteRowsInKeyOrder(sql, 'NOT "deleting"', []);
      await batches(`"key" LIKE 'disks/%'`, remove);
      await batches(`"key" LIKE 'chunks/%'`, remove);
    },
    async condemn(keys) {
      await confirm();
      mine = await inTransaction(sql, async (tx) => {
        const { rows: [{ generation }] } = await tx.query<{ generation: number }>(`UPDATE "GcState" SET "generation" = "generation" + 1 WHERE "id" = 'default' RETURNING "generation"`);
        for (let start = 0; start < keys.length; start += 10_000) {
          const slice = keys.slice(start, start + 10_000);
          await tx.query(
            'INSERT INTO "CondemnedBlob" ("key", "generation", "bytes") SELECT k, $3, b FROM unnest($1::text[], $2::bigint[]) AS t(k, b) ON CONFLICT ("key") DO NOTHING',
            [slice.map((c) => c.key), slice.map((c) => c.bytes), generation],
          );
        }
        return generation;
      });
      return mine;
    },
    async runningBefore(generation) {
      const { rows } = await sql.query<{ id: number; host: string; pid: number; startedAt: Date }>(
        'SELECT "id", "host", "pid", "startedAt" FROM "BackupSession" WHERE "generation" < $1 ORDER BY "id"', [generation],
      );
      const running: RunningSession[] = [];
      for (const row of rows) {
        // Free: its process is gone (its connection closed), and so is its lock.
        const { rows: [{ free }] } = await client.query<{ free: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS free', [BACKUP_SESSION_LOCK, row.id]);
        if (free) {
          await client.query('SELECT pg_advisory_unlock($1, $2)', [BACKUP_SESSION_LOCK, row.id]);
          await sql.query('DELETE FROM "BackupSession" WHERE "id" = $1', [row.id]);
        } else running.push(row);
      }
      return running;
    },
    async spare(keys) {
      await confirm();
      for (let start = 0; start < keys.length; start += 10_000) {
        await deleteRowsInKeyOrder(sql, '"key" = ANY($1) AND NOT "deleting" AND "generation" = $2', [keys.slice(start, start + 10_000), mine]);
      }
    },
    async sweep(keys, remove) {
      // Still this collection's lock: two collections never sweep at once.
      await confirm();
      // Marked first, committed: from here no backup rescues them; whoever holds a row's lock removes its blob.
      const { rows } = await retryingDeadlock(() => sql.query<{ key: string }>(
        `UPDATE "CondemnedBlob" SET "deleting" = true WHERE "key" IN (
           SELECT "key" FROM "CondemnedBlob" WHERE "key" = ANY($1) AND NOT "deleting" AND "generation" = $2 ORDER BY "key" FOR UPDATE
         ) RETURNING "key"`, [keys, mine],
      ));
      if (rows.length === 0) return [];
      return finishRemoval(sql, rows.map((row) => row.key), remove, mine);
    },
    async catalogDigests() {
      const { rows } = await sql.query<{ digest: string }>('SELECT DISTINCT "digest" FROM "DiskSetEntry"');
      return rows.map((row) => row.digest);
    },
    async release() {
      try {
        await client.query('SELECT pg_advisory_unlock($1)', [GC_RUN_LOCK]);
      } finally {
        held.release();
      }
    },
  };
}

/** What the last collection did (shown by `gc --status`, the dashboard). */
export async function recordGcRun(sql: CatalogSql, report: unknown): Promise<void> {
  await sql.query(`UPDATE "GcState" SET "lastRunAt" = now(), "lastReport" = $1 WHERE "id" = 'default'`, [JSON.stringify(report)]);
}
