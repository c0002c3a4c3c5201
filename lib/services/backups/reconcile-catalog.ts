import type { CatalogSql } from '../../catalog/db';
import type { Repository } from '../../engine/repository/repository';
import { readBackupImages, withSourceIds } from './read-backup-images';
import { type SkippedImage, markBlobsRecorded, recordBackupImages } from '../../catalog/record-backup-image';

const BATCH = 250;

export type ReconcileResult = { recorded: string[]; skipped: SkippedImage[] };

/**
 * Records the backup images the repository holds and the catalog lacks: the record of a backup killed
 * between writing its image and recording it, or lost with a catalog that died (records commit
 * asynchronously). Cheap enough to run before every backup, scan and report: one listing of images/, compared blob
 * by blob (a pack, an image stored alone) with the blobs the catalog has recorded in full (RecordedImageBlob); only
 * the images of other blobs are looked up, and only the manifests the catalog lacks are read. A manifest that cannot
 * be read is left out and reported (one warning per image), never fatal; so is what was recorded (one warning).
 */
export async function reconcileCatalog(sql: CatalogSql, options: { repo: Repository; signal?: AbortSignal; onWarning?: (message: string) => void }): Promise<ReconcileResult> {
  const listing = await options.repo.backupImageBlobs();
  const result: ReconcileResult = { recorded: [], skipped: [] };
  if (listing.blobs.length === 0) return result;
  // The usual case: every blob listed is one the catalog recorded in full (a backup marks its pack as it records it),
  // and the catalog holds as many images as the listing: nothing to do. Otherwise the blobs not marked are looked at;
  // if the counts still differ then (a record lost with its blob marked, however that came about), all the others.
  const imagesInCatalog = async () => (await sql.query<{ count: number }>('SELECT count(*)::int AS count FROM "BackupImage"')).rows[0].count;
  const [{ rows: marked }, count] = await Promise.all([sql.query<{ id: string }>('SELECT "id" FROM "RecordedImageBlob"'), imagesInCatalog()]);
  const recordedBlobs = new Set(marked.map((row) => row.id));
  const unmarked = listing.blobs.filter((blob) => !recordedBlobs.has(blob));
  if (unmarked.length === 0 && count === listing.images) return result;
  await recordMissing(sql, options, listing, unmarked, result);
  if ((await imagesInCatalog()) !== listing.images) await recordMissing(sql, options, listing, listing.blobs.filter((blob) => recordedBlobs.has(blob)), result);
  const n = result.recorded.length;
  if (n > 0) options.onWarning?.(`recorded ${n} backup image${n === 1 ? '' : 's'} that the repository held and the catalog lacked (from a run that ended before recording ${n === 1 ? 'it' : 'them'})`);
  return result;
}

/** Records the images of these blobs that the catalog lacks, then marks the blobs recorded whole. */
async function recordMissing(
  sql: CatalogSql,
  options: { repo: Repository; signal?: AbortSignal; onWarning?: (message: string) => void },
  listing: { imagesOf(blob: string): string[] },
  blobs: string[],
  result: ReconcileResult,
): Promise<void> {
  if (blobs.length === 0) return;
  const { rows } = await sql.query<{ id: string }>(
    'SELECT q.id FROM unnest($1::text[]) AS q(id) WHERE NOT EXISTS (SELECT 1 FROM "BackupImage" b WHERE b."id" = q.id) ORDER BY q.id',
    [blobs.flatMap((blob) => listing.imagesOf(blob))],
  );
  const skip = (entry: SkippedImage) => {
    result.skipped.push(entry);
    options.onWarning?.(`backup image ${entry.id} is in the repository but cannot be recorded in the catalog: ${entry.error}`);
  };
  const sourceIds = new Map<string, string>();
  for (let start = 0; start < rows.length; start += BATCH) {
    options.signal?.throwIfAborted();
    const read = await readBackupImages(options.repo, rows.slice(start, start + BATCH).map((row) => row.id));
    read.skipped.forEach(skip);
    // Each is checked again under the index lock: a prune holds it exclusive while it removes manifests.
    const batch = await recordBackupImages(sql, await withSourceIds(sql, read.images, sourceIds), {
      stillInRepository: (id) => options.repo.hasBackupImage(id),
    });
    batch.skipped.forEach(skip);
    result.recorded.push(...batch.recorded);
  }
  // The blobs now recorded in full are marked (a blob with an image the catalog refused is looked at again next time).
  await markBlobsRecorded(sql, blobs.map((blob) => ({ blob, images: listing.imagesOf(blob) })));
}
