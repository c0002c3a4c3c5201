import type { Catalog } from '../db';
import { AppError } from '../errors';

export type BackupSummary = {
  backupId: string; vm: string; source: string; createdAt: string;
  logicalBytes: number; bytesRead: number; bytesWritten: number; bytesReferenced: number;
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
    include: { vm: { include: { source: true } }, disks: { include: { disk: true }, orderBy: { path: 'asc' } } },
  });
  return images.map((image) => ({
    backupId: image.id, vm: image.vm.name, source: image.vm.source.name, createdAt: image.createdAt.toISOString(),
    logicalBytes: Number(image.logicalBytes), bytesRead: Number(image.bytesRead),
    bytesWritten: Number(image.bytesWritten), bytesReferenced: Number(image.bytesReferenced),
    disks: image.disks.map((ref) => ({
      path: ref.path, identifier: ref.disk.identifier, common: ref.common, action: ref.action,
      digest: ref.digest, logicalBytes: Number(ref.logicalBytes),
    })),
  }));
}

export type CommonDiskSummary = {
  identifier: string; path: string; vms: string[]; logicalBytes: number; storedBytes: number; copiesStored: number;
};

export async function listCommonDisks(db: Catalog): Promise<CommonDiskSummary[]> {
  const disks = await db.disk.findMany({
    where: { common: true },
    include: {
      vms: { include: { vm: true } },
      versions: { include: { storedDisk: true }, orderBy: { createdAt: 'desc' } },
    },
    orderBy: { path: 'asc' },
  });
  return disks.map((disk) => {
    const stored = new Map(disk.versions.map((v) => [v.digest, v.storedDisk]));
    return {
      identifier: disk.identifier,
      path: disk.path,
      vms: disk.vms.map((link) => link.vm.name).sort(),
      logicalBytes: Number(disk.versions[0]?.storedDisk.logicalBytes ?? 0),
      storedBytes: [...stored.values()].reduce((sum, s) => sum + Number(s.storedBytes), 0),
      copiesStored: stored.size,
    };
  });
}

export type CatalogStats = {
  sources: number; vms: number; vmsProtected: number; backups: number; disks: number; commonDisks: number;
  storedDisks: number; logicalBytes: number; bytesRead: number; storedBytes: number;
  bytesReferenced: number; savedByCommonDisks: number; dedupRatio: number;
};

export async function getStats(db: Catalog): Promise<CatalogStats> {
  const [sources, vms, vmsProtected, backups, disks, commonDisks, storedDisks, totals, stored, commonSaved] = await Promise.all([
    db.source.count(),
    db.vm.count(),
    db.vm.count({ where: { backups: { some: {} } } }),
    db.backupImage.count(),
    db.disk.count(),
    db.disk.count({ where: { common: true } }),
    db.storedDisk.count(),
    db.backupImage.aggregate({ _sum: { logicalBytes: true, bytesRead: true, bytesReferenced: true } }),
    db.storedDisk.aggregate({ _sum: { storedBytes: true } }),
    db.diskReference.aggregate({ _sum: { logicalBytes: true }, where: { common: true, action: 'referenced' } }),
  ]);
  const logicalBytes = Number(totals._sum.logicalBytes ?? 0);
  const storedBytes = Number(stored._sum.storedBytes ?? 0);
  return {
    sources, vms, vmsProtected, backups, disks, commonDisks, storedDisks,
    logicalBytes,
    bytesRead: Number(totals._sum.bytesRead ?? 0),
    storedBytes,
    bytesReferenced: Number(totals._sum.bytesReferenced ?? 0),
    savedByCommonDisks: Number(commonSaved._sum.logicalBytes ?? 0),
    dedupRatio: storedBytes > 0 ? Math.round((logicalBytes / storedBytes) * 100) / 100 : 0,
  };
}
