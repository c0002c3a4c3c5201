import type { CatalogSql } from './db';

/** Advisory lock class of syncs (the two-key form: this class, a hash of the copy's repository id). */
const SYNC_LOCK_CLASS = 0x766d7379; // "vmsy"

/**
 * Holds the right to write into one copy (`vmdedup sync`, a sync job) for as long as the returned release is not called:
 * a session-level advisory lock on a connection of its own, so a second sync into the same copy from any host of this
 * catalog is refused, and a killed process's lock ends with its connection. Undefined when another sync holds it.
 */
export async function acquireSyncLease(sql: CatalogSql, copyId: string): Promise<(() => void) | undefined> {
  const client = await sql.connect();
  try {
    const { rows: [{ locked }] } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked', [SYNC_LOCK_CLASS, copyId]);
    if (!locked) {
      client.release();
      return undefined;
    }
  } catch (err) {
    client.release(err as Error);
    throw err;
  }
  // Destroyed rather than returned to the pool: its session lock ends with it.
  return () => client.release(true);
}
