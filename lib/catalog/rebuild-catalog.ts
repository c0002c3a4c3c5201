import type { Catalog } from '../db';
import type { BackupImageManifest } from '../engine/repository/manifests';
import type { Repository } from '../engine/repository/repository';
import { recordBackupImage } from './record-backup-image';

/**
 * Recreates the catalog's index from the repository alone: every backup image is replayed, oldest first,
 * through the same code that recorded it. Sources named by the images are created when missing.
 */
export async function rebuildCatalog(db: Catalog, options: { repo: Repository; onProgress?: (done: number, total: number) => void }): Promise<{ backupImages: number; sources: number }> {
  const images: BackupImageManifest[] = [];
  for await (const id of options.repo.listBackupImages()) images.push(await options.repo.getBackupImage(id));
  images.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));

  await db.$transaction([
    db.diskReference.deleteMany(), db.backupImage.deleteMany(), db.diskVersion.deleteMany(),
    db.vmDisk.deleteMany(), db.storedDisk.deleteMany(), db.disk.deleteMany(), db.vm.deleteMany(),
  ]);
  const sourceIds = new Map<string, string>();
  for (const [index, image] of images.entries()) {
    let sourceId = sourceIds.get(image.source.name);
    if (!sourceId) {
      const source = await db.source.upsert({
        where: { name: image.source.name },
        create: { name: image.source.name, type: image.source.type, path: image.source.path },
        update: {},
      });
      sourceId = source.id;
      sourceIds.set(image.source.name, sourceId);
    }
    await recordBackupImage(db, { sourceId, image });
    options.onProgress?.(index + 1, images.length);
  }
  return { backupImages: images.length, sources: sourceIds.size };
}
