/** Scheduled jobs (backups, garbage collections, verifications, off-site copies): saving, listing, removing, and running one. */
import type { Catalog } from '../../catalog/db';
import { type RetentionPolicy, hasRules } from '../../engine/gc/retention';
import { AppError } from '../../errors';
import { scheduleProblem } from './cron';
import { nextRunOf } from './coverage';
import { normalizedLocation } from '../../config';

export const SCHEDULED_KINDS = ['backup', 'gc', 'verify', 'sync'] as const;
export type ScheduledKind = (typeof SCHEDULED_KINDS)[number];

export type ScheduledJobInput = {
  name: string; kind?: ScheduledKind; schedule: string; timeZone: string; source?: string | null; vmPatterns?: string[];
  /** verify: only backups not verified for this many days. */
  verifyOutdatedAfterDays?: number | null;
  /** backup: alert when a VM it covers has no good backup for this many hours. */
  rpoHours?: number | null;
  retention?: RetentionPolicy; rereadAfterDays?: number | null; maxRunMinutes?: number | null; enabled?: boolean;
  /** A failed run is tried again this many times, after retryDelayMinutes, then twice as long each time. */
  retries?: number; retryDelayMinutes?: number;
  /** verify: an I/O budget per run (bytes of chunks), a read rate cap, and restore drills of that many VMs per run. */
  verifyBudgetBytes?: number | null; verifyMaxBytesPerSecond?: number | null; drillVms?: number;
  /** sync: the repository the backups are copied into (`vmdedup sync --to`). */
  syncTo?: string | null;
};

type Nullable = 'syncTo' | 'source' | 'rereadAfterDays' | 'maxRunMinutes' | 'verifyOutdatedAfterDays' | 'rpoHours' | 'verifyBudgetBytes' | 'verifyMaxBytesPerSecond';
export type ScheduledJobView = Required<Omit<ScheduledJobInput, Nullable>> & { [K in Nullable]: NonNullable<ScheduledJobInput[K]> | null } & {
  nextRunAt: string | null; lastSuccessAt: string | null; lastRunJobId: string | null;
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Creates a job, or with `edit` changes the given fields of an existing one. */
export async function saveScheduledJob(db: Catalog, input: Partial<ScheduledJobInput> & { name: string }, options: { edit?: boolean } = {}): Promise<ScheduledJobView> {
  const existing = await db.scheduledJob.findUnique({ where: { name: input.name } });
  if (options.edit && !existing) throw new AppError('NOT_FOUND', { message: `no scheduled job named '${input.name}' (see 'vmdedup job list')` });
  if (!options.edit && existing) throw new AppError('CONFLICT', { message: `a scheduled job named '${input.name}' exists: change it with 'vmdedup job edit'` });
  if (!NAME.test(input.name)) throw new AppError('BAD_INPUT', { message: `job name '${input.name}': letters, digits, '.', '_' and '-' only, up to 64` });
  const schedule = input.schedule ?? existing?.schedule;
  const timeZone = input.timeZone ?? existing?.timeZone;
  if (!schedule || !timeZone) throw new AppError('BAD_INPUT', { message: 'a backup job needs --schedule (cron: minute hour day month weekday)' });
  const problem = scheduleProblem(schedule, timeZone);
  if (problem) throw new AppError('BAD_INPUT', { message: problem });
  const kind = input.kind ?? (existing?.kind as ScheduledKind | undefined) ?? 'backup';
  if (!SCHEDULED_KINDS.includes(kind)) throw new AppError('BAD_INPUT', { message: `job kind '${kind}': backup, gc, verify or sync` });
  if (existing && input.kind && input.kind !== existing.kind) throw new AppError('BAD_INPUT', { message: `job '${input.name}' is a ${existing.kind} job: its kind cannot change (remove it and add another)` });
  const source = input.source === undefined ? existing?.source ?? null : input.source;
  const syncTo = input.syncTo === undefined ? existing?.syncTo ?? null : input.syncTo;
  if (kind === 'sync' && !syncTo) throw new AppError('BAD_INPUT', { message: 'a sync job needs --to <folder or s3://bucket/prefix>: where the copy is' });
  if (kind !== 'sync' && syncTo) throw new AppError('BAD_INPUT', { message: '--to belongs to sync jobs' });
  if (kind === 'sync' && (source || input.vmPatterns?.length)) throw new AppError('BAD_INPUT', { message: 'a sync job copies the whole repository: it takes no --source or --vm' });
  if (kind === 'gc' && (source || input.vmPatterns?.length || (input.retention && hasRules(input.retention)))) throw new AppError('BAD_INPUT', { message: 'a gc job collects the whole repository: it takes no --source, --vm or --keep-…' });
  if (kind !== 'backup' && input.retention && hasRules(input.retention)) throw new AppError('BAD_INPUT', { message: `--keep-… rules belong to backup jobs, not to ${kind} jobs` });
  if (kind !== 'verify' && input.verifyOutdatedAfterDays != null) throw new AppError('BAD_INPUT', { message: '--outdated-after belongs to verify jobs' });
  if (kind !== 'backup' && input.rpoHours != null) throw new AppError('BAD_INPUT', { message: '--rpo-hours belongs to backup jobs' });
  if (input.rpoHours != null && !(input.rpoHours > 0)) throw new AppError('BAD_INPUT', { message: '--rpo-hours must be more than 0' });
  if (kind !== 'verify' && (input.verifyBudgetBytes != null || input.verifyMaxBytesPerSecond != null || input.drillVms)) throw new AppError('BAD_INPUT', { message: '--budget, --max-rate and --drill-vms belong to verify jobs' });
  if (input.retries !== undefined && !(Number.isInteger(input.retries) && input.retries >= 0 && input.retries <= 10)) throw new AppError('BAD_INPUT', { message: '--retries must be a whole number from 0 to 10' });
  if (input.retryDelayMinutes !== undefined && !(input.retryDelayMinutes > 0 && input.retryDelayMinutes <= 24 * 60)) throw new AppError('BAD_INPUT', { message: '--retry-delay must be more than 0 and at most 1440 minutes' });
  if (input.drillVms !== undefined && !(Number.isInteger(input.drillVms) && input.drillVms >= 0 && input.drillVms <= 100)) throw new AppError('BAD_INPUT', { message: '--drill-vms must be a whole number from 0 to 100' });
  if (source && !(await db.source.findUnique({ where: { name: source } }))) throw new AppError('BAD_INPUT', { message: `no source named '${source}' (see 'vmdedup source list')` });
  const data = {
    schedule, timeZone, source,
    ...(input.syncTo !== undefined ? { syncTo: input.syncTo ? normalizedLocation(input.syncTo) : null } : {}),
    ...(input.verifyOutdatedAfterDays !== undefined ? { verifyOutdatedAfterDays: input.verifyOutdatedAfterDays } : {}),
    ...(input.rpoHours !== undefined ? { rpoHours: input.rpoHours } : {}),
    ...(input.vmPatterns !== undefined ? { vmPatterns: input.vmPatterns } : {}),
    ...(input.retention !== undefined ? { retention: input.retention } : {}),
    ...(input.rereadAfterDays !== undefined ? { rereadAfterDays: input.rereadAfterDays } : {}),
    ...(input.maxRunMinutes !== undefined ? { maxRunMinutes: input.maxRunMinutes } : {}),
    ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
    ...(input.retries !== undefined ? { retries: input.retries } : {}),
    ...(input.retryDelayMinutes !== undefined ? { retryDelayMinutes: input.retryDelayMinutes } : {}),
    ...(input.verifyBudgetBytes !== undefined ? { verifyBudgetBytes: input.verifyBudgetBytes === null ? null : BigInt(input.verifyBudgetBytes) } : {}),
    ...(input.verifyMaxBytesPerSecond !== undefined ? { verifyMaxBytesPerSecond: input.verifyMaxBytesPerSecond === null ? null : BigInt(input.verifyMaxBytesPerSecond) } : {}),
    ...(input.drillVms !== undefined ? { drillVms: input.drillVms } : {}),
    // A changed schedule counts from now: no run fires for the fires of the old one; nor does a job enabled again for
    // the fires it had while disabled.
    ...(existing && (schedule !== existing.schedule || timeZone !== existing.timeZone || (input.enabled && !existing.enabled)) ? { scheduledAt: new Date() } : {}),
  };
  const row = existing
    ? await db.scheduledJob.update({ where: { id: existing.id }, data })
    : await db.scheduledJob.create({ data: { name: input.name, kind, ...data } });
  // A job disabled, rescheduled or enabled again drops the retry its last run was waiting for: that retry belongs to
  // the fires it no longer has (enabled days later, it would fire at once, for a failure of days ago).
  if (existing && (input.enabled === false || 'scheduledAt' in data)) {
    await db.job.updateMany({ where: { scheduledJobId: existing.id, retryAt: { not: null } }, data: { retryAt: null } });
  }
  return toView(row);
}

export async function listScheduledJobs(db: Catalog): Promise<ScheduledJobView[]> {
  return (await db.scheduledJob.findMany({ orderBy: { name: 'asc' } })).map(toView);
}

export async function removeScheduledJob(db: Catalog, name: string): Promise<void> {
  const { count } = await db.scheduledJob.deleteMany({ where: { name } });
  if (count === 0) throw new AppError('NOT_FOUND', { message: `no scheduled job named '${name}' (see 'vmdedup job list')` });
}

/**
 * When the retry of a failed run (its `attempt`, 1 for the scheduled run) is due: retryDelayMinutes after the first
 * attempt, twice as long after each later one; null once the job's retries are used up.
 */
export function retryAfter(job: Pick<ScheduledJobRow, 'retries' | 'retryDelayMinutes' | 'enabled'>, attempt: number, finishedAt: Date): Date | null {
  if (!job.enabled || attempt > job.retries) return null;
  return new Date(finishedAt.getTime() + job.retryDelayMinutes * 60_000 * 2 ** (attempt - 1));
}

export type ScheduledJobRow = Awaited<ReturnType<Catalog["scheduledJob"]['findFirstOrThrow']>>;

function toView(row: ScheduledJobRow): ScheduledJobView {
  const nextRunAt = row.enabled ? nextRunOf(row)?.toISOString() ?? null : null;
  return {
    name: row.name, kind: row.kind as ScheduledKind, verifyOutdatedAfterDays: row.verifyOutdatedAfterDays, rpoHours: row.rpoHours, schedule: row.schedule, timeZone: row.timeZone, source: row.source, vmPatterns: row.vmPatterns as string[],
    retention: row.retention as RetentionPolicy, rereadAfterDays: row.rereadAfterDays, maxRunMinutes: row.maxRunMinutes, enabled: row.enabled,
    retries: row.retries, retryDelayMinutes: row.retryDelayMinutes, drillVms: row.drillVms, syncTo: row.syncTo,
    verifyBudgetBytes: row.verifyBudgetBytes === null ? null : Number(row.verifyBudgetBytes),
    verifyMaxBytesPerSecond: row.verifyMaxBytesPerSecond === null ? null : Number(row.verifyMaxBytesPerSecond),
    nextRunAt, lastSuccessAt: row.lastSuccessAt?.toISOString() ?? null, lastRunJobId: row.lastRunJobId,
  };
}

