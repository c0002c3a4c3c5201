/** Backup jobs (schedules): saving, listing, removing, and running one (its backup, then its retention). */
import type { Catalog, CatalogSql } from '../../catalog/db';
import { type RetentionPolicy, hasRules } from '../../engine/gc/retention';
import type { Repository } from '../../engine/repository/repository';
import { AppError } from '../../errors';
import { type BackupReport, type RunBackupOptions, runBackup } from '../backups/run-backup';
import { type PruneReport, pruneBackups } from '../maintenance/prune-backups';
import { nextFire, scheduleProblem } from './schedules';

export type BackupJobInput = {
  name: string; schedule: string; timeZone: string; source?: string | null; vmPatterns?: string[];
  retention?: RetentionPolicy; rereadAfterDays?: number | null; maxRunMinutes?: number | null; enabled?: boolean;
};

export type BackupJobView = Required<Omit<BackupJobInput, 'source' | 'rereadAfterDays' | 'maxRunMinutes'>> & {
  source: string | null; rereadAfterDays: number | null; maxRunMinutes: number | null;
  nextRunAt: string | null; lastSuccessAt: string | null; lastRunJobId: string | null;
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Creates a job, or with `edit` changes the given fields of an existing one. */
export async function saveBackupJob(db: Catalog, input: Partial<BackupJobInput> & { name: string }, options: { edit?: boolean } = {}): Promise<BackupJobView> {
  const existing = await db.backupJob.findUnique({ where: { name: input.name } });
  if (options.edit && !existing) throw new AppError('NOT_FOUND', { message: `no backup job named '${input.name}' (see 'vmdedup job list')` });
  if (!options.edit && existing) throw new AppError('CONFLICT', { message: `a backup job named '${input.name}' exists: change it with 'vmdedup job edit'` });
  if (!NAME.test(input.name)) throw new AppError('BAD_INPUT', { message: `job name '${input.name}': letters, digits, '.', '_' and '-' only, up to 64` });
  const schedule = input.schedule ?? existing?.schedule;
  const timeZone = input.timeZone ?? existing?.timeZone;
  if (!schedule || !timeZone) throw new AppError('BAD_INPUT', { message: 'a backup job needs --schedule (cron: minute hour day month weekday)' });
  const problem = scheduleProblem(schedule, timeZone);
  if (problem) throw new AppError('BAD_INPUT', { message: problem });
  const source = input.source === undefined ? existing?.source ?? null : input.source;
  if (source && !(await db.source.findUnique({ where: { name: source } }))) throw new AppError('BAD_INPUT', { message: `no source named '${source}' (see 'vmdedup source list')` });
  const data = {
    schedule, timeZone, source,
    ...(input.vmPatterns !== undefined ? { vmPatterns: input.vmPatterns } : {}),
    ...(input.retention !== undefined ? { retention: input.retention } : {}),
    ...(input.rereadAfterDays !== undefined ? { rereadAfterDays: input.rereadAfterDays } : {}),
    ...(input.maxRunMinutes !== undefined ? { maxRunMinutes: input.maxRunMinutes } : {}),
    ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
    // A changed schedule counts from now: no run fires for the fires of the old one.
    ...(existing && (schedule !== existing.schedule || timeZone !== existing.timeZone) ? { scheduledAt: new Date() } : {}),
  };
  const row = existing
    ? await db.backupJob.update({ where: { id: existing.id }, data })
    : await db.backupJob.create({ data: { name: input.name, ...data } });
  return toView(row);
}

export async function listBackupJobs(db: Catalog): Promise<BackupJobView[]> {
  return (await db.backupJob.findMany({ orderBy: { name: 'asc' } })).map(toView);
}

export async function removeBackupJob(db: Catalog, name: string): Promise<void> {
  const { count } = await db.backupJob.deleteMany({ where: { name } });
  if (count === 0) throw new AppError('NOT_FOUND', { message: `no backup job named '${name}' (see 'vmdedup job list')` });
}

type Row = Awaited<ReturnType<Catalog['backupJob']['findFirstOrThrow']>>;

function toView(row: Row): BackupJobView {
  let nextRunAt: string | null = null;
  try {
    if (row.enabled) nextRunAt = nextFire(row.schedule, row.timeZone, row.scheduledAt).toISOString();
  } catch { /* a zone this runtime does not know: no next run */ }
  return {
    name: row.name, schedule: row.schedule, timeZone: row.timeZone, source: row.source, vmPatterns: row.vmPatterns as string[],
    retention: row.retention as RetentionPolicy, rereadAfterDays: row.rereadAfterDays, maxRunMinutes: row.maxRunMinutes, enabled: row.enabled,
    nextRunAt, lastSuccessAt: row.lastSuccessAt?.toISOString() ?? null, lastRunJobId: row.lastRunJobId,
  };
}

export type BackupJobRun = { backup: BackupReport; prune?: PruneReport; pruneError?: string; stoppedForTime?: boolean };

/**
 * Runs a backup job now: its backup, then, when the backup saved anything, its retention over the VMs it backed up.
 * A run longer than the job's maxRunMinutes is stopped cleanly (what it stored is kept).
 */
export async function runBackupJob(db: Catalog, sql: CatalogSql, options: {
  name: string; repo: Repository; signal?: AbortSignal; onProgress?: RunBackupOptions['onProgress']; now?: () => Date;
}): Promise<BackupJobRun> {
  const job = await db.backupJob.findUnique({ where: { name: options.name } });
  if (!job) throw new AppError('NOT_FOUND', { message: `no backup job named '${options.name}' (it was removed)` });
  const timeout = job.maxRunMinutes ? AbortSignal.timeout(job.maxRunMinutes * 60_000) : undefined;
  const signal = timeout && options.signal ? AbortSignal.any([options.signal, timeout]) : timeout ?? options.signal;
  const patterns = job.vmPatterns as string[];
  let backup: BackupReport;
  try {
    backup = await runBackup(sql, {
      repo: options.repo, source: job.source ?? undefined, vmPatterns: patterns.length ? patterns : undefined,
      rereadAfterDays: job.rereadAfterDays ?? undefined, signal, onProgress: options.onProgress,
    });
  } catch (err) {
    if (timeout?.aborted && !options.signal?.aborted) throw new AppError('INTERNAL', { message: `stopped: the run took longer than ${job.maxRunMinutes} minutes (what it stored is kept and reused by the next run)`, cause: err });
    throw err;
  }
  const run: BackupJobRun = { backup };
  const retention = job.retention as RetentionPolicy;
  const only = backup.backups.map((b) => ({ source: b.source, vm: b.vm }));
  if (hasRules(retention) && only.length) {
    try {
      run.prune = await pruneBackups(sql, { repo: options.repo, policy: retention, only, timeZone: job.timeZone });
    } catch (err) {
      run.pruneError = (err as Error).message;
    }
  }
  if (backup.failures.length === 0 && backup.problems.length === 0 && !run.pruneError) {
    await db.backupJob.update({ where: { id: job.id }, data: { lastSuccessAt: (options.now ?? (() => new Date()))() } });
  }
  return run;
}
