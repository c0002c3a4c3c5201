/**
 * Restore drills: a VM's newest backup restored into scratch space the way a user would restore it (to a folder, with
 * its shared disks as backed up), every restored disk compared with its stored disk block for block and checked by
 * `qemu-img`, then the scratch space removed. The result is recorded on the image.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type CatalogSql, catalogCall } from '../../catalog/db';
import { listDrillCandidates, recordDrillResults } from '../../catalog/verify-results';
import type { Repository } from '../../engine/repository/repository';
import { checkRestoredDisk } from '../../engine/verify/drill-check';
import { processAlive } from '../../engine/process-alive';
import { drillScratchDir } from '../../config';
import { AppError, toAppError } from '../../errors';
import { globMatcher } from '../../glob';
import { restoreVm } from '../restores/restore-vm';

export type DrillResult = { backupId: string; vm: string; source: string; status: 'ok' | 'failed'; problems: string[]; disks: number; bytesWritten: number; seconds: number };

export type DrillOptions = {
  repo: Repository;
  /** The VMs to drill (by name; all of them); else `count` VMs (default 1) of `source` / `vmPatterns`, drilled longest ago first. */
  vms?: string[];
  count?: number;
  source?: string;
  vmPatterns?: string[];
  /** Where the scratch folders go (default: drillScratchDir()); each drill's is removed when it ends. */
  scratchDir?: string;
  now?: () => Date;
  onDrill?: (drill: { vm: string; index: number; total: number }) => void;
  signal?: AbortSignal;
};

const DRILL_PREFIX = 'vmdedup-drill-';
const HOST = os.hostname().replace(/[^A-Za-z0-9.]/g, '_').slice(0, 40);

/**
 * Removes the folders of drills killed before they could (kill -9, a power cut): those of this host whose process is
 * gone. Another host's (a shared scratch folder) and a live process's are left alone.
 */
async function sweepAbandonedDrills(scratchRoot: string): Promise<void> {
  const entries = await readdir(scratchRoot, { withFileTypes: true }).catch(() => []);
  const mine = new RegExp(`^${DRILL_PREFIX}${HOST.replace(/\./g, '\\.')}-(\\d+)-`);
  for (const entry of entries) {
    const pid = mine.exec(entry.name)?.[1];
    if (!pid || !entry.isDirectory() || processAlive(Number(pid))) continue;
    await rm(path.join(scratchRoot, entry.name), { recursive: true, force: true }).catch(() => undefined);
  }
}

export async function drillRestores(sql: CatalogSql, options: DrillOptions): Promise<DrillResult[]> {
  const matchers = options.vmPatterns?.map(globMatcher);
  const candidates = (await catalogCall(() => listDrillCandidates(sql, { vms: options.vms })))
    .filter((c) => (!options.source || c.source === options.source) && (!matchers || matchers.some((m) => m(c.vm))));
  for (const name of options.vms ?? []) {
    if (!candidates.some((c) => c.vm === name)) throw new AppError('BAD_INPUT', { message: `no backups of a VM named '${name}' (see 'vmdedup backups')` });
  }
  const chosen = options.vms?.length ? candidates : candidates.slice(0, options.count ?? 1);
  const scratchRoot = path.resolve(options.scratchDir ?? drillScratchDir());
  await sweepAbandonedDrills(scratchRoot);
  const results: DrillResult[] = [];
  for (const [index, candidate] of chosen.entries()) {
    options.signal?.throwIfAborted();
    options.onDrill?.({ vm: candidate.vm, index, total: chosen.length });
    const result = await drillOne(sql, options.repo, candidate, scratchRoot, options.signal);
    results.push(result);
    await catalogCall(() => recordDrillResults(sql, [result], (options.now ?? (() => new Date()))()));
  }
  return results;
}

async function drillOne(sql: CatalogSql, repo: Repository, candidate: { backupId: string; vm: string; source: string }, scratchRoot: string, signal?: AbortSignal): Promise<DrillResult> {
  const started = Date.now();
  const problems: string[] = [];
  let disks = 0;
  let bytesWritten = 0;
  let dir: string | undefined;
  try {
    dir = await mkdtemp(path.join(scratchRoot, `${DRILL_PREFIX}${HOST}-${process.pid}-${candidate.vm.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40)}-`));
    // Into a folder, policy overwrite restores the shared disks with the VM, as backed up: the whole chain is checked.
    const { plan, result } = await restoreVm(sql, repo, {
      vm: candidate.vm, backupId: candidate.backupId, target: { kind: 'folder', dir }, policy: 'overwrite', confirmed: true, signal,
    });
    if (!result) throw new Error(plan.message);
    bytesWritten = result.bytesWritten;
    for (const disk of plan.disks) {
      if (!disk.files?.length) continue;
      disks++;
      problems.push(...(await checkRestoredDisk(repo, { entry: disk.entry, files: disk.files.map((f) => f.destination), root: dir, signal })));
    }
  } catch (err) {
    if (signal?.aborted) throw err;
    problems.push(`restore failed: ${toAppError(err).userMessage}`);
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return { ...candidate, status: problems.length ? 'failed' : 'ok', problems, disks, bytesWritten, seconds: (Date.now() - started) / 1000 };
}
