import type { Catalog } from '../../catalog/db';

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
