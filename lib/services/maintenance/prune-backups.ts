import { type CatalogSql, catalogCall } from '../../catalog/db';
import { digestsOfImages, forgetImages, listRetainableImages, sourceExists } from '../../catalog/prune-images';
import { Reachable } from '../../engine/gc/collect';
import { type RetentionPolicy, applyRetention, hasRules } from '../../engine/gc/retention';
import { chunkKey, type ChunkId } from '../../engine/repository/chunk-id';
import { type Repository, storedDiskKey } from '../../engine/repository/repository';
import { AppError } from '../../errors';
import { reconcileCatalog } from '../backups/reconcile-catalog';

export type PruneOptions = {
  repo: Repository;
  policy: RetentionPolicy;
  /** Only these VMs (by name); all VMs when absent. */
  vms?: string[];
  source?: string;
  /** Only these VMs of these sources (a backup job's run: the VMs it backed up). */
  only?: { source: string; vm: string }[];
  timeZone: string;
  dryRun?: boolean;
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
};

export type PruneReport = {
  dryRun: boolean;
  kept: { vm: string; source: string; backupId: string; reasons: string[] }[];
  removed: { vm: string; source: string; backupId: string }[];
  /** What removing these images frees once garbage collection runs: the stored disks no retained image of any VM
   *  names, the chunks no retained stored disk names, and the image manifests. */
  freedBytes: number;
};

/** Applies a retention policy to each VM's backups (a preview with dryRun), removing the images it does not keep. */
export async function pruneBackups(sql: CatalogSql, options: PruneOptions): Promise<PruneReport> {
  if (!hasRules(options.policy)) throw new AppError('BAD_INPUT', { message: 'no retention rule given (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within): nothing would be kept, so nothing is removed' });
  const { repo } = options;
  await catalogCall(() => reconcileCatalog(sql, { repo, signal: options.signal, onWarning: options.onWarning }));
  if (options.source) {
    if (!(await catalogCall(() => sourceExists(sql, options.source!)))) throw new AppError('BAD_INPUT', { message: `no source named '${options.source}' (see 'vmdedup source list')` });
  }
  const images = await catalogCall(() => listRetainableImages(sql));
  const only = options.only && new Set(options.only.map((o) => `${o.source}\u0000${o.vm}`));
  const chosen = images.filter((image) => (!options.source || image.source === options.source) && (!options.vms?.length || options.vms.includes(image.vm))
    && (!only || only.has(`${image.source}\u0000${image.vm}`)));
  for (const name of options.vms ?? []) {
    if (!chosen.some((image) => image.vm === name)) throw new AppError('BAD_INPUT', { message: `no backups of a VM named '${name}'${options.source ? ` in source '${options.source}'` : ''} (see 'vmdedup backups')` });
  }
  const byVm = new Map<string, typeof chosen>();
  for (const image of chosen) byVm.set(image.vmId, [...(byVm.get(image.vmId) ?? []), image]);
  const report: PruneReport = { dryRun: !!options.dryRun, kept: [], removed: [], freedBytes: 0 };
  const removedIds = new Set<string>();
  for (const vmImages of byVm.values()) {
    const { vm, source } = vmImages[0];
    const decision = applyRetention(vmImages, options.policy, options.timeZone);
    for (const kept of decision.kept) report.kept.push({ vm, source, backupId: kept.id, reasons: kept.reasons });
    for (const id of decision.removed) {
      report.removed.push({ vm, source, backupId: id });
      removedIds.add(id);
    }
  }
  report.freedBytes = await bytesFreedWithout(sql, repo, removedIds, options.signal);
  if (!options.dryRun && removedIds.size) {
    await catalogCall(() => forgetImages(sql, [...removedIds], async (ids) => {
      await repo.removeBackupImages(ids);
    }));
  }
  return report;
}

/** The bytes that become unreachable when these images go: common disks stay while any retained image names them. */
async function bytesFreedWithout(sql: CatalogSql, repo: Repository, removed: Set<string>, signal?: AbortSignal): Promise<number> {
  if (removed.size === 0) return 0;
  const digestsOf = await catalogCall(() => digestsOfImages(sql));
  const retainedDigests = new Set<string>();
  const removedDigests = new Set<string>();
  for (const [id, digests] of digestsOf) for (const digest of digests) (removed.has(id) ? removedDigests : retainedDigests).add(digest);
  const retained = new Reachable(repo);
  await retained.addDisks([...retainedDigests], signal);
  const freedDisks = [...removedDigests].filter((digest) => !retainedDigests.has(digest));
  const freed = new Reachable(repo);
  await freed.addDisks(freedDisks, signal);
  let bytes = 0;
  bytes += await repo.backupImageBytes([...removed]);
  for (const digest of freed.disks) bytes += (await repo.sizeOf(storedDiskKey(digest))) ?? 0;
  for (const id of freed.chunks) if (!retained.chunks.has(id)) bytes += (await repo.sizeOf(chunkKey(id as ChunkId))) ?? 0;
  return bytes;
}
