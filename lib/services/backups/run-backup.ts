import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { type CatalogSql, catalogCall } from '../../catalog/db';
import { type ImageSummary, type VmBackupResult, backupVms } from '../../engine/backup/backup';
import { ImagesWithdrawn, RunFault } from '../../engine/errors';
import type { BackupProgress } from '../../engine/backup/progress';
import { InputError } from '../../engine/errors';
import type { Repository } from '../../engine/repository/repository';
import { type SourceInventory, scanSource } from '../../engine/sources/inventory';
import { scanWithMemo } from '../sources/scan-with-memo';
import { AppError } from '../../errors';
import { findStoredVersions, recordBackupImageBatch } from '../../catalog/record-backup-image';
import { wholePackOf } from '../../engine/repository/image-pack';
import { reconcileCatalog } from './reconcile-catalog';
import { recordInventory } from '../../catalog/record-inventory';
import { type SourceRow } from '../sources/list-sources';
import { selectSources } from '../sources/select-sources';
import { scanChosenVms } from './scan-chosen-vms';
import { globMatcher } from '../../glob';
import { type BackupSession, openBackupSession, vmClaimKeys } from '../../catalog/gc-coordination';
import { CondemnedReuseGuard } from '../../engine/gc/reuse-guard';

export type BackupDiskReport = {
  path: string; identifier: string; common: boolean; action: 'stored' | 'referenced';
  logicalBytes: number; bytesRead: number; bytesWritten: number;
};
export type BackupFailure = {
  vm: string; source: string; configPath: string; error: string;
  /** False when the run stopped before this VM's image was written. */
  attempted: boolean;
  /** The VM's image is in the repository but the catalog did not record it. */
  backupId?: string;
};
export type BackupReport = {
  /** `consistency`: how the VM was held while read (domains of a libvirt connection only; see the manifest). */
  backups: { vm: string; source: string; backupId: string; consistency?: 'application' | 'crash' | 'offline'; disks: BackupDiskReport[] }[];
  failures: BackupFailure[];
  /** Problems of a source rather than of one VM (it could not be read; an ambiguous disk GUID): each makes the
   *  run exit 2, while every VM they do not stop is backed up. */
  problems: { source: string; message: string }[];
  totals: { logicalBytes: number; bytesRead: number; bytesWritten: number };
  warnings: string[];
  /**
   * Set when a failure of the repository's storage or of the catalog stopped the run: where (the VM it hit,
   * when one did) and why. Every VM after it is in `failures` with `attempted: false`.
   */
  stopped?: { vm?: string; source: string; error: string };
};

export type RunBackupOptions = {
  source?: string;
  vms?: string[];
  /** VMs by name pattern (`*`, `?`; a backup job's): those of the scanned sources whose names match any. */
  vmPatterns?: string[];
  /** Exactly these VMs of these sources (a retry's: what the failed run did not back up); one gone since is skipped. */
  onlyVms?: { source: string; vm: string }[];
  repo: Repository;
  /** See BackupOptions.rereadAfterDays. */
  rereadAfterDays?: number;
  onProgress?: (progress: BackupProgress & { source: string }) => void;
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
};

/**
 * Backs up the selected VMs (all VMs of the selected sources by default) and records each in the catalog. The run
 * is a backup session of garbage collection's protocol (lib/engine/gc/README.md) from before its first decision to
 * reuse anything until after its last image is written.
 */
export async function runBackup(sql: CatalogSql, options: RunBackupOptions): Promise<BackupReport> {
  const session = await catalogCall(() => openBackupSession(sql));
  const guard = new CondemnedReuseGuard(options.repo, session);
  try {
    const report = await runBackupSession(sql, options, session, guard);
    // What verify had found damaged and this run stored again is whole now (its images are durable).
    if (guard.healed.size) await options.repo.flush().then(() => session.healed([...guard.healed])).catch(() => undefined);
    return report;
  } finally {
    await session.close().catch(() => undefined); // a lost connection ends the session too
  }
}

async function runBackupSession(sql: CatalogSql, options: RunBackupOptions, session: BackupSession, reuse: CondemnedReuseGuard): Promise<BackupReport> {
  const report: BackupReport = { backups: [], failures: [], problems: [], totals: { logicalBytes: 0, bytesRead: 0, bytesWritten: 0 }, warnings: [] };
  const warn = (message: string) => { report.warnings.push(message); options.onWarning?.(message); };
  // First what an earlier run (killed, or cut off from its catalog) stored but never recorded.
  await catalogCall(() => reconcileCatalog(sql, { repo: options.repo, signal: options.signal, onWarning: warn }));
  const sources = await catalogCall(() => selectSources(sql, options.source));
  if (sources.length === 0) throw new AppError('BAD_INPUT', { message: "no sources registered: add one with 'vmdedup source add <name> --type libvirt|vmware --path <dir>'" });
  // A few VMs of large sources are read alone (their configs and disks), where the latest scan vouches for them.
  // (A source that cannot be read then is reported by the full scan, as always.)
  const chosen = options.vms?.length
    ? await catalogCall(() => scanChosenVms(sql, { sources, vms: options.vms!, signal: options.signal })).catch((err) => {
      if (err instanceof InputError) return undefined;
      throw err;
    })
    : undefined;
  const scanned: { source: SourceRow; inventory: SourceInventory }[] = chosen ?? [];
  for (const source of chosen ? [] : sources) {
    let inventory: SourceInventory;
    try {
      // --reread-after 0 (read everything again) reads every header again too.
      inventory = options.rereadAfterDays === 0 ? await scanSource(source, { signal: options.signal })
        : await scanWithMemo(source.id, (memo) => scanSource(source, { signal: options.signal, memo }));
    } catch (err) {
      // A source that cannot be read at all (its folder vanished, an unmounted datastore) is one line; the
      // catalog keeps its last picture of it, and the other sources go on.
      if (!(err instanceof InputError)) throw err;
      report.problems.push({ source: source.name, message: err.message });
      continue;
    }
    // Every backup refreshes the catalog's picture of the source (VMs, disks, who shares what, problems).
    await catalogCall(() => recordInventory(sql, { sourceId: source.id, inventory }));
    scanned.push({ source, inventory });
  }
  const plan = options.onlyVms ? pickVms(scanned, options.onlyVms, warn)
    : options.vmPatterns?.length ? matchVms(scanned, options.vmPatterns) : assignVms(scanned, options.vms, report.problems);

  // The images of this run share its id (the first image's time-sorted id form, made once here).
  const runId = `run-${new Date().toISOString().replace(/[-:]|\.\d+/g, '')}-${randomBytes(3).toString('hex')}`;
  // Temp files of killed writers (kill -9, power loss): the sweep reads a few small folders.
  await options.repo.sweepTemporaryFiles().catch((err) => warn(`temp files not swept: ${(err as Error).message}`));
  for (const { source, inventory, vmNames: planned } of plan) {
    let vmNames = planned;
    // A source's problems that concern this run: all of them for a whole source, else those about disks of the chosen VMs.
    const chosen = planned ? new Set(inventory.vms.filter((vm) => planned.includes(vm.name)).flatMap((vm) => vm.disks.map((use) => use.diskPath))) : undefined;
    for (const problem of inventory.problems) {
      if (!chosen || problem.disks.some((disk) => chosen.has(disk))) report.problems.push({ source: source.name, message: problem.message });
    }
    let results: VmBackupResult[];
    // One backup per VM at a time: a VM another run is backing up now is left to it (and to a retry of this run).
    const names = vmNames ?? inventory.vms.map((vm) => vm.name);
    const named = new Set(names);
    const busyVms = report.stopped ? [] : await claimVms(session, source.id, inventory.vms.filter((vm) => named.has(vm.name)));
    const busy = new Set(busyVms.map((vm) => vm.name));
    const busyResults: VmBackupResult[] = busyVms
      .map((vm) => ({ vm: vm.name, configPath: vm.configPath, ok: false, attempted: false, error: 'not backed up: another run is backing it up right now' }));
    vmNames = busy.size ? names.filter((name) => !busy.has(name)) : vmNames;
    if (report.stopped) {
      results = notAttempted(inventory, vmNames, report.stopped);
    } else if (vmNames?.length === 0) {
      results = [];
    } else {
      try {
        results = await backupVms({
          inventory,
          vmNames,
          repo: options.repo,
          rereadAfterDays: options.rereadAfterDays,
          runId,
          reuse: {
            mayReuseChunk: (id) => catalogCall(() => reuse.mayReuseChunk(id)),
            mayReuseDisk: (digest) => catalogCall(() => reuse.mayReuseDisk(digest)),
            beforePutChunk: (id) => catalogCall(() => reuse.beforePutChunk(id)),
            beforePutDisk: (digest) => catalogCall(() => reuse.beforePutDisk(digest)),
          },
          lookupStoredDisks: (disks) => catalogCall(() => findStoredVersions(sql, { sourceId: source.id, disks })),
          onImages: async (images) => {
            // The images are durable now. Their reuses are safe only if the session's lock held until this moment (a
            // collection waits for it); if its connection was lost meanwhile, a collection may have taken the run for
            // ended and removed what they name: they are withdrawn, not recorded, and the run stops.
            try {
              await session.confirmAlive();
            } catch (err) {
              await options.repo.removeBackupImages(images.map((image) => image.id)).catch(() => undefined);
              throw new ImagesWithdrawn(`not recorded, withdrawn from the repository: ${(err as Error).message}`, { cause: err });
            }
            // A batch is one pack, written whole (backupVms): recorded whole, reconcile need not look at it again.
            const { skipped } = await catalogCall(() => recordBackupImageBatch(sql, images.map((image) => ({ sourceId: source.id, image })), { wholeBlob: wholePackOf(images.map((image) => image.id)) }));
            const refused = new Map(skipped.map((image) => [image.id, image.error]));
            return images.map((image) => (refused.has(image.id) ? new Error(refused.get(image.id)) : undefined));
          },
          onProgress: (progress) => options.onProgress?.({ ...progress, source: source.name }),
          onWarning: warn,
          signal: options.signal,
        });
      } catch (err) {
        // Before any VM of this source was backed up (the catalog's lookups, the repository's first check).
        if (!(err instanceof RunFault)) throw err;
        report.stopped = { source: source.name, error: err.message };
        results = notAttempted(inventory, vmNames, report.stopped);
      }
    }
    for (const result of [...busyResults, ...results]) {
      if (!result.ok) {
        report.failures.push({
          vm: result.vm, source: source.name, configPath: result.configPath, error: result.error,
          attempted: result.attempted !== false, ...(result.backupId ? { backupId: result.backupId } : {}),
        });
        if (result.stoppedRun) report.stopped ??= { vm: result.vm, source: source.name, error: result.error };
        continue;
      }
      const disks = result.image.disks.map((entry) => diskReport(entry, result.configPath));
      report.backups.push({ vm: result.vm, source: source.name, backupId: result.image.id, ...(result.image.consistency ? { consistency: result.image.consistency } : {}), disks });
      for (const disk of disks) {
        report.totals.logicalBytes += disk.logicalBytes;
        report.totals.bytesRead += disk.bytesRead;
        report.totals.bytesWritten += disk.bytesWritten;
      }
    }
  }
  return report;
}

/**
 * Claims the VMs for this run; returns those another run holds (any of its keys: its name, or its config through
 * another source or name), after letting go what this run took of them (it would keep such a VM from a third run
 * until this one ends). The keys are not kept: a pool's 20,000 would be held to the run's end.
 */
async function claimVms(session: BackupSession, sourceId: string, vms: SourceInventory['vms']): Promise<SourceInventory['vms']> {
  const claiming = vms.map((vm) => ({ vm, keys: vmClaimKeys(sourceId, vm) }));
  const taken = await catalogCall(() => session.claimVms(claiming.flatMap((c) => c.keys)));
  const busy = claiming.filter((c) => c.keys.some((key) => taken.has(key)));
  if (busy.length) await catalogCall(() => session.releaseVms(busy.flatMap((c) => c.keys.filter((key) => !taken.has(key)))));
  return busy.map((c) => c.vm);
}

/** The VMs of a source the run did not reach, after a failure of the repository or the catalog stopped it. */
function notAttempted(inventory: SourceInventory, vmNames: string[] | undefined, stopped: NonNullable<BackupReport['stopped']>): VmBackupResult[] {
  const vms = vmNames ? inventory.vms.filter((vm) => vmNames.includes(vm.name)) : inventory.vms;
  const where = stopped.vm ? `at ${stopped.vm}` : `before source ${stopped.source}`;
  return vms.map((vm) => ({ vm: vm.name, configPath: vm.configPath, ok: false, attempted: false, error: `not backed up: the run stopped ${where} (${stopped.error})` }));
}

/** The VMs whose names match a pattern, per source (a source with none is left out); none at all is bad input. */
function matchVms(scanned: { source: SourceRow; inventory: SourceInventory }[], patterns: string[]) {
  const matchers = patterns.map(globMatcher);
  const plan = scanned.map((s) => ({ ...s, vmNames: [...new Set(s.inventory.vms.map((vm) => vm.name).filter((name) => matchers.some((m) => m(name))))] }))
    .filter((s) => s.vmNames.length > 0);
  if (plan.length === 0) throw new AppError('BAD_INPUT', { message: `no VM matches ${patterns.map((p) => `'${p}'`).join(', ')}` });
  return plan;
}

/** Exactly the named VMs of the named sources (by source: two sources may have VMs of one name); those gone are told. */
function pickVms(scanned: { source: SourceRow; inventory: SourceInventory }[], only: { source: string; vm: string }[], warn: (message: string) => void) {
  const plan = scanned.map((s) => {
    const wanted = new Set(only.filter((o) => o.source === s.source.name).map((o) => o.vm));
    return { ...s, vmNames: s.inventory.vms.map((vm) => vm.name).filter((name) => wanted.delete(name)), gone: [...wanted] };
  });
  const scannedNames = new Set(scanned.map((s) => s.source.name));
  const gone = [...plan.flatMap((p) => p.gone.map((vm) => `${p.source.name}/${vm}`)), ...only.filter((o) => !scannedNames.has(o.source)).map((o) => `${o.source}/${o.vm}`)];
  if (gone.length) warn(`not in their sources any more, not backed up: ${gone.join(', ')}`);
  return plan.filter((p) => p.vmNames.length > 0).map(({ gone: _, ...p }) => p);
}

/** Which VMs of which source: every VM, or each `--vm` found in exactly one source. */
function assignVms(scanned: { source: SourceRow; inventory: SourceInventory }[], names: string[] | undefined, unread: { source: string }[]) {
  if (!names || names.length === 0) return scanned.map((s) => ({ ...s, vmNames: undefined as string[] | undefined }));
  const bySource = new Map<string, string[]>();
  for (const name of names) {
    const holders = scanned.filter((s) => s.inventory.vms.some((vm) => vm.name === name));
    if (holders.length === 0) {
      const where = scanned.length === 1 && unread.length === 0 ? `source '${scanned[0].source.name}'` : 'any source';
      const why = unread.length ? `; source ${unread.map((u) => `'${u.source}'`).join(', ')} could not be read` : '';
      throw new AppError('BAD_INPUT', { message: `no VM named '${name}' in ${where} (see 'vmdedup inventory')${why}` });
    }
    if (holders.length > 1) throw new AppError('BAD_INPUT', { message: `VM '${name}' exists in sources ${holders.map((h) => h.source.name).join(', ')}: add --source` });
    const list = bySource.get(holders[0].source.id) ?? [];
    if (!list.includes(name)) list.push(name);
    bySource.set(holders[0].source.id, list);
  }
  return scanned.filter((s) => bySource.has(s.source.id)).map((s) => ({ ...s, vmNames: bySource.get(s.source.id) }));
}

function diskReport(entry: ImageSummary['disks'][number], configPath: string): BackupDiskReport {
  // Attached disks: the path as the VM's config names it, made absolute; parents: the path they resolve to.
  const named = entry.via === 'attached' && entry.target ? path.resolve(path.dirname(configPath), entry.target) : entry.path;
  return {
    path: named, identifier: entry.identifier, common: entry.common, action: entry.action,
    logicalBytes: entry.logicalBytes, bytesRead: entry.bytesRead, bytesWritten: entry.bytesWritten,
  };
}
