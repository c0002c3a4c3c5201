import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { CatalogSql } from '../db';
import { backupVms } from '../engine/backup/backup';
import type { BackupProgress } from '../engine/backup/progress';
import type { BackupDiskEntry } from '../engine/repository/manifests';
import type { Repository } from '../engine/repository/repository';
import { type SourceInventory, scanSource } from '../engine/sources/inventory';
import { AppError } from '../errors';
import { findStoredVersions, recordBackupImage } from './record-backup-image';
import { reconcileCatalog } from './reconcile-catalog';
import { recordInventory } from './record-inventory';
import { type SourceRow, selectSources } from './sources';

export type BackupDiskReport = {
  path: string; identifier: string; common: boolean; action: 'stored' | 'referenced';
  logicalBytes: number; bytesRead: number; bytesWritten: number;
};
export type BackupReport = {
  backups: { vm: string; source: string; backupId: string; disks: BackupDiskReport[] }[];
  failures: { vm: string; source: string; configPath: string; error: string }[];
  totals: { logicalBytes: number; bytesRead: number; bytesWritten: number };
  warnings: string[];
};

export type RunBackupOptions = {
  source?: string;
  vms?: string[];
  repo: Repository;
  onProgress?: (progress: BackupProgress & { source: string }) => void;
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
};

/** Backs up the selected VMs (all VMs of the selected sources by default) and records each in the catalog. */
export async function runBackup(sql: CatalogSql, options: RunBackupOptions): Promise<BackupReport> {
  const report: BackupReport = { backups: [], failures: [], totals: { logicalBytes: 0, bytesRead: 0, bytesWritten: 0 }, warnings: [] };
  const warn = (message: string) => { report.warnings.push(message); options.onWarning?.(message); };
  // First what an earlier run (killed, or cut off from its catalog) stored but never recorded.
  await reconcileCatalog(sql, { repo: options.repo, signal: options.signal, onWarning: warn });
  const sources = await selectSources(sql, options.source);
  if (sources.length === 0) throw new AppError('BAD_INPUT', { message: "no sources registered: add one with 'vmdedup source add <name> --type libvirt|vmware --path <dir>'" });
  const scanned: { source: SourceRow; inventory: SourceInventory }[] = [];
  for (const source of sources) {
    const inventory = await scanSource(source, { signal: options.signal });
    // Every backup refreshes the catalog's picture of the source (VMs, disks, who shares what, problems).
    await recordInventory(sql, { sourceId: source.id, inventory });
    scanned.push({ source, inventory });
  }
  const plan = assignVms(scanned, options.vms);

  // The images of this run share its id (the first image's time-sorted id form, made once here).
  const runId = `run-${new Date().toISOString().replace(/[-:]|\.\d+/g, '')}-${randomBytes(3).toString('hex')}`;
  for (const { source, inventory, vmNames } of plan) {
    const results = await backupVms({
      inventory,
      vmNames,
      repo: options.repo,
      runId,
      lookupStoredDisks: (disks) => findStoredVersions(sql, { sourceId: source.id, disks }),
      onImage: async (image) => { await recordBackupImage(sql, { sourceId: source.id, image }); },
      onProgress: (progress) => options.onProgress?.({ ...progress, source: source.name }),
      onWarning: warn,
      signal: options.signal,
    });
    for (const result of results) {
      if (!result.ok) {
        report.failures.push({ vm: result.vm, source: source.name, configPath: result.configPath, error: result.error });
        continue;
      }
      const disks = result.image.disks.map((entry) => diskReport(entry, result.configPath));
      report.backups.push({ vm: result.vm, source: source.name, backupId: result.image.id, disks });
      for (const disk of disks) {
        report.totals.logicalBytes += disk.logicalBytes;
        report.totals.bytesRead += disk.bytesRead;
        report.totals.bytesWritten += disk.bytesWritten;
      }
    }
  }
  return report;
}

/** Which VMs of which source: every VM, or each `--vm` found in exactly one source. */
function assignVms(scanned: { source: SourceRow; inventory: SourceInventory }[], names: string[] | undefined) {
  if (!names || names.length === 0) return scanned.map((s) => ({ ...s, vmNames: undefined as string[] | undefined }));
  const bySource = new Map<string, string[]>();
  for (const name of names) {
    const holders = scanned.filter((s) => s.inventory.vms.some((vm) => vm.name === name));
    if (holders.length === 0) throw new AppError('BAD_INPUT', { message: `no VM named '${name}' in ${scanned.length === 1 ? `source '${scanned[0].source.name}'` : 'any source'} (see 'vmdedup inventory')` });
    if (holders.length > 1) throw new AppError('BAD_INPUT', { message: `VM '${name}' exists in sources ${holders.map((h) => h.source.name).join(', ')}: add --source` });
    const list = bySource.get(holders[0].source.id) ?? [];
    if (!list.includes(name)) list.push(name);
    bySource.set(holders[0].source.id, list);
  }
  return scanned.filter((s) => bySource.has(s.source.id)).map((s) => ({ ...s, vmNames: bySource.get(s.source.id) }));
}

function diskReport(entry: BackupDiskEntry, configPath: string): BackupDiskReport {
  // Attached disks: the path as the VM's config names it, made absolute; parents: the path they resolve to.
  const named = entry.via === 'attached' && entry.target ? path.resolve(path.dirname(configPath), entry.target) : entry.path;
  return {
    path: named, identifier: entry.identifier, common: entry.common, action: entry.action,
    logicalBytes: entry.logicalBytes, bytesRead: entry.bytesRead, bytesWritten: entry.bytesWritten,
  };
}
