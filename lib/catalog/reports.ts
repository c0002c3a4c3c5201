import type { Catalog, CatalogSql } from '../db';
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

/** One statement: the CLI's `stats` should not wait for the ORM to warm up for ten small aggregates. */
export async function getStats(sql: CatalogSql): Promise<CatalogStats> {
  const { rows: [row] } = await sql.query<Record<string, string>>(
    `SELECT
       (SELECT count(*) FROM "Source") AS sources,
       (SELECT count(*) FROM "Vm") AS vms,
       (SELECT count(*) FROM "Vm" v WHERE EXISTS (SELECT 1 FROM "BackupImage" b WHERE b."vmId" = v.id)) AS "vmsProtected",
       (SELECT count(*) FROM "BackupImage") AS backups,
       (SELECT count(*) FROM "Disk") AS disks,
       (SELECT count(*) FROM "Disk" WHERE common) AS "commonDisks",
       (SELECT count(*) FROM "StoredDisk") AS "storedDisks",
       (SELECT coalesce(sum("logicalBytes"), 0) FROM "BackupImage") AS "logicalBytes",
       (SELECT coalesce(sum("bytesRead"), 0) FROM "BackupImage") AS "bytesRead",
       (SELECT coalesce(sum("bytesReferenced"), 0) FROM "BackupImage") AS "bytesReferenced",
       (SELECT coalesce(sum("storedBytes"), 0) FROM "StoredDisk") AS "storedBytes",
       (SELECT coalesce(sum("logicalBytes"), 0) FROM "DiskReference" WHERE common AND action = 'referenced') AS "savedByCommonDisks"`,
  );
  const n = (key: string) => Number(row[key]);
  const logicalBytes = n('logicalBytes');
  const storedBytes = n('storedBytes');
  return {
    sources: n('sources'), vms: n('vms'), vmsProtected: n('vmsProtected'), backups: n('backups'), disks: n('disks'),
    commonDisks: n('commonDisks'), storedDisks: n('storedDisks'), logicalBytes, bytesRead: n('bytesRead'), storedBytes,
    bytesReferenced: n('bytesReferenced'), savedByCommonDisks: n('savedByCommonDisks'),
    dedupRatio: storedBytes > 0 ? Math.round((logicalBytes / storedBytes) * 100) / 100 : 0,
  };
}
