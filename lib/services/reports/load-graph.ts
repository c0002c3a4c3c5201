import type { Catalog } from '../../catalog/db';

export type GraphData = {
  sources: string[];
  vms: { id: string; name: string; source: string }[];
  disks: { id: string; path: string; source: string; format: string; common: boolean; sizeBytes: number; parentId: string | null }[];
  /** A VM's pointer to a disk in its config ('attached'), or a use recorded by a backup of another VM ('shared'). */
  pointers: { vmId: string; diskId: string; via: 'attached' | 'shared' }[];
};

/** The fleet as a graph: VMs, disks, the pointers from VMs to disks and the parent links between disks. */
export async function loadGraph(db: Catalog): Promise<GraphData> {
  const [sources, vms, disks, links] = await Promise.all([
    db.source.findMany({ select: { id: true, name: true }, orderBy: { name: 'asc' } }),
    db.vm.findMany({ select: { id: true, name: true, sourceId: true }, orderBy: { name: 'asc' } }),
    db.disk.findMany({ select: { id: true, path: true, sourceId: true, format: true, common: true, sizeBytes: true, parentPath: true } }),
    db.vmDisk.findMany({ where: { via: { in: ['attached', 'shared'] } }, select: { vmId: true, diskId: true, via: true } }),
  ]);
  const sourceName = new Map(sources.map((s) => [s.id, s.name]));
  const diskByPath = new Map(disks.map((d) => [`${d.sourceId}\u0000${d.path}`, d.id]));
  return {
    sources: sources.map((s) => s.name),
    vms: vms.map((vm) => ({ id: vm.id, name: vm.name, source: sourceName.get(vm.sourceId)! })),
    disks: disks.map((d) => ({
      id: d.id, path: d.path, source: sourceName.get(d.sourceId)!, format: d.format, common: d.common, sizeBytes: Number(d.sizeBytes),
      parentId: d.parentPath ? (diskByPath.get(`${d.sourceId}\u0000${d.parentPath}`) ?? null) : null,
    })),
    pointers: links.map((l) => ({ vmId: l.vmId, diskId: l.diskId, via: l.via as 'attached' | 'shared' })),
  };
}
