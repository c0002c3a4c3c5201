/** Running a scheduled job now (the worker's scheduled runs, `vmdedup job run`): its backup and retention, its gc or its verify. */
import type { Catalog, CatalogSql } from '../../catalog/db';
import type { GcReport } from '../../engine/gc/collect';
import { type RetentionPolicy, hasRules } from '../../engine/gc/retention';
import type { Repository } from '../../engine/repository/repository';
import { type DrillResult, drillRestores } from '../maintenance/drill-restores';
import { AppError } from '../../errors';
import { type BackupReport, type RunBackupOptions, runBackup } from '../backups/run-backup';
import { runGarbageCollection } from '../maintenance/collect-garbage';
import { type PruneReport, pruneBackups } from '../maintenance/prune-backups';
import { type VerifyBackupsReport, verifyBackups } from '../maintenance/verify-backups';
import { type SyncResult, syncToRepository } from '../maintenance/sync-repository';
import type { ScheduledJobRow, ScheduledKind } from './scheduled-jobs';

export type ScheduledJobRun =
  | { kind: 'backup'; backup: BackupReport; prune?: PruneReport; pruneError?: string }
  | { kind: 'gc'; gc: GcReport }
  | { kind: 'verify'; verify: VerifyBackupsReport; drills: DrillResult[] }
  | { kind: 'sync'; sync: SyncResult };

/**
 * Runs a backup job now: its backup, then, when the backup saved anything, its retention over the VMs it backed up.
 * A run longer than the job's maxRunMinutes is stopped cleanly (what it stored is kept).
 */
export type RunScheduledJobOptions = {
  name: string; repo: Repository; signal?: AbortSignal; onProgress?: RunBackupOptions['onProgress']; now?: () => Date;
  /** A queued run: the job it was queued for (by id: a job removed and added again under that name is another job). */
  id?: string;
  /** A retry of a backup job: only these VMs. */
  onlyVms?: { source: string; vm: string }[];
};

/** The run of a job queued as `kind`: refused when the job is of another kind now, so its report is of that kind. */
export async function runScheduledJob<K extends ScheduledKind>(db: Catalog, sql: CatalogSql, options: RunScheduledJobOptions & { kind: K }): Promise<Extract<ScheduledJobRun, { kind: K }>>;
export async function runScheduledJob(db: Catalog, sql: CatalogSql, options: RunScheduledJobOptions & { kind?: undefined }): Promise<ScheduledJobRun>;
export async function runScheduledJob(db: Catalog, sql: CatalogSql, options: RunScheduledJobOptions & { kind?: ScheduledKind }): Promise<ScheduledJobRun> {
  const job = options.id ? await db.scheduledJob.findUnique({ where: { id: options.id } }) : await db.scheduledJob.findUnique({ where: { name: options.name } });
  if (!job) throw new AppError('NOT_FOUND', { message: `scheduled job '${options.name}' was removed after this run was queued: nothing was done` });
  if (options.kind && job.kind !== options.kind) throw new AppError('CONFLICT', { message: `scheduled job '${options.name}' is a ${job.kind} job now: nothing was done` });
  if (options.id && !job.enabled) throw new AppError('CONFLICT', { message: `scheduled job '${options.name}' was disabled after this run was queued: nothing was done` });
  const limit = job.maxRunMinutes ? timeLimit(job.maxRunMinutes * 60_000) : undefined;
  try {
    return await runJobNow(db, sql, job, options, limit?.signal);
  } finally {
    limit?.cancel();
  }
}

/** A run stopped by its job's time limit (not tried again: it would overrun again; the next fire goes on). */
export class TimeLimitError extends AppError {
  constructor(options: { message: string; cause?: unknown }) {
    super('INTERNAL', options);
  }
}

/** An AbortSignal that aborts after `ms` (any length: Node's timers take 32-bit delays), and its cancel. */
function timeLimit(ms: number): { signal: AbortSignal; cancel: () => void } {
  const controller = new AbortController();
  const end = Date.now() + ms;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const left = end - Date.now();
    if (left <= 0) controller.abort(new DOMException('time limit', 'TimeoutError'));
    else timer = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
  };
  arm();
  return { signal: controller.signal, cancel: () => clearTimeout(timer) };
}

async function runJobNow(db: Catalog, sql: CatalogSql, job: ScheduledJobRow, options: RunScheduledJobOptions, timeout: AbortSignal | undefined): Promise<ScheduledJobRun> {
  const signal = timeout && options.signal ? AbortSignal.any([options.signal, timeout]) : timeout ?? options.signal;
  const succeeded = () => db.scheduledJob.update({ where: { id: job.id }, data: { lastSuccessAt: (options.now ?? (() => new Date()))() } });
  const overran = (err: unknown) => (timeout?.aborted && !options.signal?.aborted
    ? new TimeLimitError({ message: `stopped: the run took longer than ${job.maxRunMinutes} minutes (${job.kind === 'backup' ? 'what it stored is kept and reused by the next run' : job.kind === 'verify' ? 'what it verified is recorded' : job.kind === 'sync' ? 'what it copied is kept and the next run goes on from there' : 'what it removed stays removed'})`, cause: err }) : err);
  if (job.kind === 'gc') {
    const gc = await runGarbageCollection(sql, { repo: options.repo, signal }).catch((err) => { throw overran(err); });
    if (gc.pendingBytes === 0) await succeeded();
    return { kind: 'gc', gc };
  }
  if (job.kind === 'sync') {
    if (!job.syncTo) throw new AppError('BAD_INPUT', { message: `sync job '${job.name}' names no repository to copy to: set it with 'vmdedup job edit ${job.name} --to <folder or s3://bucket/prefix>'` });
    const sync = await syncToRepository({ to: job.syncTo, source: options.repo, signal }).catch((err) => { throw overran(err); });
    if (sync.report.images.failed.length === 0) await succeeded();
    return { kind: 'sync', sync };
  }
  if (job.kind === 'verify') {
    const patterns = job.vmPatterns as string[];
    const scope = { vmPatterns: patterns.length ? patterns : undefined, source: job.source ?? undefined };
    const verify = await verifyBackups(sql, {
      repo: options.repo, ...scope, outdatedAfterDays: job.verifyOutdatedAfterDays ?? undefined, signal,
      budgetBytes: job.verifyBudgetBytes === null ? undefined : Number(job.verifyBudgetBytes),
      maxBytesPerSecond: job.verifyMaxBytesPerSecond === null ? undefined : Number(job.verifyMaxBytesPerSecond),
    }).catch((err) => { throw overran(err); });
    const drills = job.drillVms > 0 ? await drillRestores(sql, { repo: options.repo, ...scope, count: job.drillVms, signal }).catch((err) => { throw overran(err); }) : [];
    if (verify.images.every((image) => image.status === 'ok') && verify.overdue === 0 && drills.every((d) => d.status === 'ok')) await succeeded();
    return { kind: 'verify', verify, drills };
  }
  const patterns = job.vmPatterns as string[];
  let backup: BackupReport;
  try {
    backup = await runBackup(sql, {
      repo: options.repo, source: job.source ?? undefined, vmPatterns: patterns.length ? patterns : undefined, onlyVms: options.onlyVms,
      rereadAfterDays: job.rereadAfterDays ?? undefined, signal, onProgress: options.onProgress,
    });
  } catch (err) {
    throw overran(err);
  }
  const run: ScheduledJobRun & { kind: 'backup' } = { kind: 'backup', backup };
  const retention = job.retention as RetentionPolicy;
  const only = backup.backups.map((b) => ({ source: b.source, vm: b.vm }));
  if (hasRules(retention) && only.length) {
    try {
      run.prune = await pruneBackups(sql, { repo: options.repo, policy: retention, only, timeZone: job.timeZone });
    } catch (err) {
      run.pruneError = (err as Error).message;
    }
  }
  if (backup.failures.length === 0 && backup.problems.length === 0 && !run.pruneError) await succeeded();
  return run;
}
