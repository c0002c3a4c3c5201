import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { type BackupSummary, listBackups } from './list-backups';

export type VmDiskView = {
  path: string; format: string; sizeBytes: number; via: string; slot: string | null; common: boolean;
  /** The parent chain, nearest parent first (paths). */
  chain: string[];
  usedBy: string[];
};
export type VmView = { id: string; name: string; source: string; configPath: string; uuid: string; disks: VmDiskView[]; backups: BackupSummary[] };

/** One VM: its disks (attached and parents), their chains, which are common and with whom, and its backup images. */
export async function getVm(db: Catalog, options: { source: string; name: string }): Promise<VmView> {
  const vm = await db.vm.findFirst({
    where: { name: options.name, source: { name: options.source } },
    include: {
      source: true,
      disks: { include: { disk: { include: { vms: { select: { vm: { select: { name: true } } } } } } } },
      backups: { select: { id: true } },
    },
  });
  if (!vm) throw new AppError('NOT_FOUND', { message: `no VM named '${options.name}' in source '${options.source}'` });
  const sourceDisks = await db.disk.findMany({ where: { sourceId: vm.sourceId }, select: { path: true, parentPath: true } });
  const parentOf = new Map(sourceDisks.map((d) => [d.path, d.parentPath]));
  const chainOf = (path: string) => {
    const chain: string[] = [];
    for (let parent = parentOf.get(path); parent && !chain.includes(parent) && chain.length < 256; parent = parentOf.get(parent)) chain.push(parent);
    return chain;
  };
  const order = (via: string) => (via === 'attached' ? 0 : via === 'parent' ? 1 : 2);
  const disks = vm.disks
    .map((link) => ({
      path: link.disk.path, format: link.disk.format, sizeBytes: Number(link.disk.sizeBytes), via: link.via, slot: link.slot,
      common: link.disk.common, chain: chainOf(link.disk.path), usedBy: link.disk.vms.map((v) => v.vm.name).sort(),
    }))
    .sort((a, b) => order(a.via) - order(b.via) || (a.slot ?? '').localeCompare(b.slot ?? '') || a.path.localeCompare(b.path));
  const backups = vm.backups.length ? (await listBackups(db, { vm: vm.name })).filter((b) => b.source === vm.source.name) : [];
  return { id: vm.id, name: vm.name, source: vm.source.name, configPath: vm.configPath, uuid: vm.uuid, disks, backups };
}
