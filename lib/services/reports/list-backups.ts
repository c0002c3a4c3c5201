import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';

export type BackupSummary = {
  backupId: string; vm: string; source: string; createdAt: string;
  /** Never pruned. */
  protected: boolean;
  logicalBytes: number; bytesRead: number; bytesWritten: number; bytesReferenced: number;
  /** How the VM was held while read (domains of a libvirt connection); absent where the source cannot tell. */
  consistency?: string;
  disks: { path: string; identifier: string; common: boolean; action: string; digest: string; logicalBytes: number }[];
};

export async function listBackups(db: Catalog, options: { vm?: string; limit?: number } = {}): Promise<BackupSummary[]> {
  if (options.vm && !(await db.vm.findFirst({ where: { name: options.vm } }))) {
    throw new AppError('NOT_FOUND', { message: `no VM named '${options.vm}' in the catalog` });
  }
  const images = await db.backupImage.findMany({
    where: options.vm ? { vm: { name: options.vm } } : {},
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: options.limit,
    include: { vm: { include: { source: true } }, diskSet: { include: { entries: { include: { disk: true }, orderBy: { path: 'asc' } } } }, diskWork: true },
  });
  return images.map((image) => ({
    backupId: image.id, vm: image.vm.name, source: image.vm.source.name, createdAt: image.createdAt.toISOString(), protected: image.protected,
    logicalBytes: Number(image.logicalBytes), bytesRead: Number(image.bytesRead),
    bytesWritten: Number(image.bytesWritten), bytesReferenced: Number(image.bytesReferenced),
    ...(image.consistency ? { consistency: image.consistency } : {}),
    disks: (image.diskSet?.entries ?? []).map((entry) => ({
      path: entry.path, identifier: entry.disk.identifier, common: entry.common,
      action: image.diskWork.find((work) => work.position === entry.position)?.action ?? 'referenced',
      digest: entry.digest, logicalBytes: Number(entry.logicalBytes),
    })),
  }));
}
