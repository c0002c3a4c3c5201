import type pg from 'pg';
import { type CatalogSql, inTransaction } from '../db';
import type { Repository } from '../engine/repository/repository';
import { CATALOG_INDEX_LOCK } from './locks';
import { listBackupImageIds, readBackupImages, withSourceIds } from './read-backup-images';
import { type SkippedImage, recordBatchIn } from './record-backup-image';
import { claimRepository } from './repository-identity';

/** Images read and recorded per batch: set-based statements over a bounded slice of the repository. */
const BATCH = 250;

export type RebuildResult = { backupImages: number; sources: number; skipped: SkippedImage[] };

/**
 * Recreates the catalog's index from the repository alone, in ONE transaction: readers see the old index
 * until the new one commits, and a crash (of this process or of the database) leaves the old one. It holds
 * the index lock exclusively (locks.ts) from before it lists the repository: a backup's image recorded
 * before is in the listing, one written after is recorded after the rebuild commits. Every image goes
 * through the same code that recorded it; an unreadable manifest is skipped and reported (`onSkipped`).
 * Sources named by the images are created when missing. `adopt`: index this repository even if the catalog
 * recorded another (otherwise refused).
 */
export async function rebuildCatalog(sql: CatalogSql, options: {
  repo: Repository; location: string; adopt?: boolean; signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void; onSkipped?: (skipped: SkippedImage) => void;
}): Promise<RebuildResult> {
  return inTransaction(sql, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [CATALOG_INDEX_LOCK]);
    await claimRepository(client, { repo: options.repo, location: options.location, adopt: options.adopt });
    const ids = await listBackupImageIds(options.repo);
    await clearIndex(client);
    const sourceIds = new Map<string, string>();
    const sourcesUsed = new Set<string>();
    const skipped: SkippedImage[] = [];
    const skip = (entry: SkippedImage) => { skipped.push(entry); options.onSkipped?.(entry); };
    let recorded = 0;
    for (let start = 0; start < ids.length; start += BATCH) {
      options.signal?.throwIfAborted();
      const read = await readBackupImages(options.repo, ids.slice(start, start + BATCH));
      read.skipped.forEach(skip);
      const items = await withSourceIds(client, read.images, sourceIds);
      const result = await recordBatchIn(client, items);
      result.skipped.forEach(skip);
      recorded += result.recorded.length;
      const ok = new Set(result.recorded);
      for (const item of items) if (ok.has(item.image.id)) sourcesUsed.add(item.image.source.name);
      options.onProgress?.(Math.min(ids.length, start + BATCH), ids.length);
    }
    return { backupImages: recorded, sources: sourcesUsed.size, skipped };
  });
}

/**
 * Empties the index of the repository (backup images, stored disks, and the VMs and disks they and the
 * scans recorded); sources, users, jobs, restore requests and the audit trail stay. DELETE, not TRUNCATE:
 * readers keep seeing the old rows until the caller's transaction commits.
 */
export async function clearIndex(client: pg.PoolClient): Promise<void> {
  // The next scan of each source records it in full (its shortcut "nothing changed since" no longer holds).
  // Source rows first, like a scan's own statement (Source, then Vm): the same order, no deadlock.
  await client.query('UPDATE "Source" SET "inventoryDigest" = NULL WHERE "inventoryDigest" IS NOT NULL');
  await forgetBackups(client);
  for (const table of ['VmDisk', 'Disk', 'Vm']) await client.query(`DELETE FROM "${table}"`);
}

/** Forgets every backup record (images, references, stored disks, fast-path versions); the scanned VMs and disks stay. */
export async function forgetBackups(client: pg.PoolClient): Promise<void> {
  for (const table of ['DiskReference', 'BackupImage', 'DiskVersion', 'StoredDisk']) await client.query(`DELETE FROM "${table}"`);
}
