import { createHash } from 'node:crypto';
import type { CatalogSql } from '../../catalog/db';
import type { Repository } from '../../engine/repository/repository';
import { readBackupImages, withSourceIds } from './read-backup-images';
import { type SkippedImage, recordBackupImages } from '../../catalog/record-backup-image';

const BATCH = 250;

export type ReconcileResult = { inRepository: number; recorded: string[]; skipped: SkippedImage[] };

/**
 * Records the backup images the repository holds and the catalog lacks: the record of a backup killed
 * between writing its image and recording it, or lost with a catalog that died (records commit
 * asynchronously). Cheap enough to run before every backup, scan and report: one listing of images/ and, when the
 * catalog's count and digest of its image ids differ from the listing's, one query for the ids it lacks; only
 * those manifests are read. A manifest that cannot be read is left out and reported (one warning per image),
 * never fatal; so is what was recorded (one warning).
 */
export async function reconcileCatalog(sql: CatalogSql, options: { repo: Repository; signal?: AbortSignal; onWarning?: (message: string) => void }): Promise<ReconcileResult> {
  const ids = await options.repo.backupImageIds();
  const result: ReconcileResult = { inRepository: ids.length, recorded: [], skipped: [] };
  if (ids.length === 0) return result;
  // The usual case, answered by one aggregate rather than a lookup per image (a pool's history holds hundreds of
  // thousands): the catalog records exactly the images the repository holds. Ids are ASCII (backupImageKey), so
  // byte order ("C") is JavaScript's order.
  const { rows: [recorded] } = await sql.query<{ count: number; digest: string }>(
    `SELECT count(*)::int AS count, md5(coalesce(string_agg("id", E'\n' ORDER BY "id" COLLATE "C"), '')) AS digest FROM "BackupImage"`,
  );
  if (recorded.count === ids.length && recorded.digest === createHash('md5').update(ids.join('\n')).digest('hex')) return result;
  const { rows } = await sql.query<{ id: string }>(
    'SELECT q.id FROM unnest($1::text[]) AS q(id) WHERE NOT EXISTS (SELECT 1 FROM "BackupImage" b WHERE b."id" = q.id) ORDER BY q.id',
    [ids],
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
  const n = result.recorded.length;
  if (n > 0) options.onWarning?.(`recorded ${n} backup image${n === 1 ? '' : 's'} that the repository held and the catalog lacked (from a run that ended before recording ${n === 1 ? 'it' : 'them'})`);
  return result;
}
