import type { CatalogSql } from '../db';
import type { BackupImageManifest } from '../engine/repository/manifests';
import type { Repository } from '../engine/repository/repository';
import { recordBackupImage } from './record-backup-image';

/**
 * Recreates the catalog's index from the repository alone: every backup image is replayed, oldest first,
 * through the same code that recorded it. Sources named by the images are created when missing.
 */
export async function rebuildCatalog(sql: CatalogSql, options: { repo: Repository; onProgress?: (done: number, total: number) => void }): Promise<{ backupImages: number; sources: number }> {
  const images: BackupImageManifest[] = [];
  for await (const id of options.repo.listBackupImages()) images.push(await options.repo.getBackupImage(id));
  images.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));

  await sql.query('TRUNCATE "DiskReference", "BackupImage", "DiskVersion", "VmDisk", "StoredDisk", "Disk", "Vm"');
  const sourceIds = new Map<string, string>();
  for (const [index, image] of images.entries()) {
    let sourceId = sourceIds.get(image.source.name);
    if (!sourceId) {
      const { rows } = await sql.query<{ id: string }>(
        `INSERT INTO "Source" ("id", "name", "type", "path") VALUES (gen_random_uuid()::text, $1, $2, $3)
         ON CONFLICT ("name") DO UPDATE SET "name" = EXCLUDED."name" RETURNING "id"`,
        [image.source.name, image.source.type, image.source.path],
      );
      sourceId = rows[0].id;
      sourceIds.set(image.source.name, sourceId);
    }
    await recordBackupImage(sql, { sourceId, image });
    options.onProgress?.(index + 1, images.length);
  }
  return { backupImages: images.length, sources: sourceIds.size };
}
