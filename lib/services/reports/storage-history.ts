import type { CatalogSql } from '../../catalog/db';

export type StoragePoint = { at: string; logicalBytes: number; storedBytes: number };

/**
 * Logical bytes protected (every backup image's size, summed) against bytes stored (each stored disk once),
 * both cumulative, after each backup run: the gap is what deduplication and common disks save.
 */
export async function storageHistory(sql: CatalogSql, options: { points?: number } = {}): Promise<StoragePoint[]> {
  const { rows } = await sql.query<{ at: Date; logical: string; stored: string }>(
    `WITH runs AS (
       SELECT max("createdAt") AS at, sum("logicalBytes") AS logical FROM "BackupImage" GROUP BY coalesce("runId", "id")
     )
     SELECT r.at, sum(r.logical) OVER (ORDER BY r.at) AS logical,
       (SELECT coalesce(sum("storedBytes"), 0) FROM "StoredDisk" WHERE "createdAt" <= r.at) AS stored
     FROM runs r ORDER BY r.at DESC LIMIT $1`,
    [options.points ?? 200],
  );
  return rows.reverse().map((row) => ({ at: row.at.toISOString(), logicalBytes: Number(row.logical), storedBytes: Number(row.stored) }));
}
