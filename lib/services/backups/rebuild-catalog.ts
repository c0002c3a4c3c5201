import { type CatalogSql, inTransaction } from '../../catalog/db';
import type { Repository } from '../../engine/repository/repository';
import { CATALOG_INDEX_LOCK } from '../../catalog/locks';
import { type SourceLayout, readBackupImages, withSourceIds } from './read-backup-images';
import { type SkippedImage, recordBatchIn } from '../../catalog/record-backup-image';
import { claimRepository } from '../../catalog/repository-identity';
import { clearIndex } from '../../catalog/clear-index';

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
    const ids = await options.repo.backupImageIds();
    await clearIndex(client);
    const sourceIds = new Map<string, string>();
    const created = new Map<string, SourceLayout>();
    const sourcesUsed = new Set<string>();
    const skipped: SkippedImage[] = [];
    const skip = (entry: SkippedImage) => { skipped.push(entry); options.onSkipped?.(entry); };
    let recorded = 0;
    for (let start = 0; start < ids.length; start += BATCH) {
      options.signal?.throwIfAborted();
      const read = await readBackupImages(options.repo, ids.slice(start, start + BATCH));
      read.skipped.forEach(skip);
      const items = await withSourceIds(client, read.images, sourceIds, created);
      const result = await recordBatchIn(client, items);
      result.skipped.forEach(skip);
      recorded += result.recorded.length;
      const ok = new Set(result.recorded);
      for (const item of items) if (ok.has(item.image.id)) sourcesUsed.add(item.image.source.name);
      options.onProgress?.(Math.min(ids.length, start + BATCH), ids.length);
    }
    // A source created from the images takes its newest image's folders (the first batch may predate them).
    for (const [name, layout] of created) {
      await client.query('UPDATE "Source" SET "path" = $2, "storage" = $3::jsonb, "uri" = $4 WHERE "name" = $1', [name, layout.path, JSON.stringify(layout.storage), layout.uri]);
    }
    // Protection lives in the repository too (protected/): the rebuilt catalog keeps it.
    await client.query('UPDATE "BackupImage" SET "protected" = true WHERE "id" = ANY($1)', [await options.repo.protectedIds()]);
    return { backupImages: recorded, sources: sourcesUsed.size, skipped };
  });
}
