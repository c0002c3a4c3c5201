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
import { type CatalogSql, inTransaction } from './db';

/** Advisory lock class of backup sessions: (BACKUP_SESSION_LOCK, session id). */
export const BACKUP_SESSION_LOCK = 0x766d6273; // "vmbs"
/** One collection at a time (a session lock of its connection). */
export const GC_RUN_LOCK = 0x766d6763; // "vmgc"

const HOST = os.hostname();

/** A connection held for a whole run (its advisory locks live as long as it). */
type HeldClient = { client: pg.PoolClient; release: () => void };

async function holdClient(sql: CatalogSql): Promise<HeldClient> {
  const client = await sql.connect();
  let lost: Error | undefined;
  client.on('error', (err) => { lost ??= err; });
  return { client, release: () => client.release(lost ?? true) }; // destroyed: its session locks end with it
}

export type BackupSession = CondemnedKeys & { id: number; generation: number; close(): Promise<void> };

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
  try {
    await client.query('BEGIN');
    ({ rows: [{ generation }] } = await client.query<{ generation: number }>(`SELECT "generation" FROM "GcState" WHERE "id" = 'default' FOR SHARE`));
    ({ rows: [{ id }] } = await client.query<{ id: number }>('INSERT INTO "BackupSession" ("generation", "host", "pid") VALUES ($1, $2, $3) RETURNING "id"', [generation, HOST, process.pid]));
    await client.query('SELECT pg_advisory_lock($1, $2)', [BACKUP_SESSION_LOCK, id]);
    const { rows } = await client.query<{ key: string }>('SELECT "key" FROM "CondemnedBlob"');
    for (const row of rows) keys.add(row.key);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    held.release();
    throw err;
  }
  let closed = false;
  return {
    id, generation, keys,
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
  return inTransaction(sql, async (client) => {
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
  });
}

/** Removes, under their row locks, the blobs of those keys being removed, with their catalog rows, then the rows. */
async function finishRemoval(sql: CatalogSql, keys: string[], remove: (keys: string[]) => Promise<void>): Promise<Condemned[]> {
  return inTransaction(sql, async (client) => {
    const { rows } = await client.query<{ key: string; bytes: string }>(
      'SELECT "key", "bytes" FROM "CondemnedBlob" WHERE "key" = ANY($1) AND "deleting" ORDER BY "key" FOR UPDATE', [keys],
    );
    if (rows.length === 0) return [];
    const locked = rows.map((row) => row.key);
    await remove(locked);
    const digests = locked.filter((key) => key.startsWith('disks/')).map((key) => key.slice(6, -5));
    if (digests.length) {
      // The fast path must never offer a stored disk that is gone.
      await client.query('DELETE FROM "DiskVersion" WHERE "digest" = ANY($1)', [digests]);
      await client.query('DELETE FROM "StoredDisk" s WHERE s."digest" = ANY($1) AND NOT EXISTS (SELECT 1 FROM "DiskReference" r WHERE r."digest" = s."digest")', [digests]);
    }
    await client.query('DELETE FROM "CondemnedBlob" WHERE "key" = ANY($1)', [locked]);
    return rows.map((row) => ({ key: row.key, bytes: Number(row.bytes) }));
  });
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
  return {
    async recover(remove) {
      // Condemnations of a collection that stopped are withdrawn (this one decides afresh); removals it began are
      // finished, stored disks first (their chunks only after: a stored disk never outlives its chunks).
      await sql.query('DELETE FROM "CondemnedBlob" WHERE NOT "deleting"');
      await batches(`"key" LIKE 'disks/%'`, remove);
      await batches(`"key" LIKE 'chunks/%'`, remove);
    },
    async condemn(keys) {
      return inTransaction(sql, async (tx) => {
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
      for (let start = 0; start < keys.length; start += 10_000) {
        await sql.query('DELETE FROM "CondemnedBlob" WHERE "key" = ANY($1) AND NOT "deleting"', [keys.slice(start, start + 10_000)]);
      }
    },
    async sweep(keys, remove) {
      // Marked first, committed: from here no backup rescues them; whoever holds a row's lock removes its blob.
      const { rows } = await sql.query<{ key: string }>('UPDATE "CondemnedBlob" SET "deleting" = true WHERE "key" = ANY($1) AND NOT "deleting" RETURNING "key"', [keys]);
      if (rows.length === 0) return [];
      return finishRemoval(sql, rows.map((row) => row.key), remove);
    },
    async catalogDigests() {
      const { rows } = await sql.query<{ digest: string }>('SELECT DISTINCT "digest" FROM "DiskReference"');
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
