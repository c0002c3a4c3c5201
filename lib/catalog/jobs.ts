import type PgBoss from 'pg-boss';
import { jobStaleSeconds } from '../config';
import type { Catalog } from '../db';
import { AppError } from '../errors';
import type { Prisma } from '../generated/prisma/client';
import { JOB_QUEUE, JOB_SEND_OPTIONS, type QueuedJobData } from '../jobs/queue';
import { recordAudit } from './audit';

export type JobState = 'queued' | 'running' | 'succeeded' | 'partial' | 'failed';
export type JobKind = 'backup' | 'scan' | 'restore';
export type JobTarget = { vm?: string; source?: string; requestId?: string };

export type JobView = {
  id: string; kind: string; label: string; state: JobState; target: JobTarget; requestedBy: string;
  createdAt: string; startedAt: string | null; finishedAt: string | null;
  bytesDone: number; bytesTotal: number; bytesPerSecond: number; etaSeconds: number | null;
  message: string; error: string | null; result: unknown;
};

export function isFinished(state: string): boolean {
  return state === 'succeeded' || state === 'partial' || state === 'failed';
}

function toView(job: Prisma.JobGetPayload<object>): JobView {
  const bytesDone = Number(job.bytesDone);
  const bytesTotal = Number(job.bytesTotal);
  const running = job.state === 'running' && job.bytesPerSecond > 0 && bytesTotal > bytesDone;
  return {
    id: job.id, kind: job.kind, label: job.label, state: job.state as JobState, target: job.target as JobTarget, requestedBy: job.requestedBy,
    createdAt: job.createdAt.toISOString(), startedAt: job.startedAt?.toISOString() ?? null, finishedAt: job.finishedAt?.toISOString() ?? null,
    bytesDone, bytesTotal, bytesPerSecond: job.bytesPerSecond, etaSeconds: running ? Math.round((bytesTotal - bytesDone) / job.bytesPerSecond) : null,
    message: job.message, error: job.error, result: job.result,
  };
}

/**
 * Queues a backup of one VM or of every VM of a source (or of all sources). A backup of the same target
 * that is already queued or running is returned instead of a second one.
 */
export async function requestBackup(db: Catalog, queue: PgBoss, options: { actor: string; target: JobTarget }): Promise<{ job: JobView; alreadyQueued: boolean }> {
  const { vm, source } = options.target;
  if (source && !(await db.source.findUnique({ where: { name: source } }))) throw new AppError('NOT_FOUND', { message: `no source named '${source}'` });
  if (vm && (await db.vm.count({ where: { name: vm, ...(source ? { source: { name: source } } : {}) } })) === 0) {
    throw new AppError('NOT_FOUND', { message: `no VM named '${vm}'${source ? ` in source '${source}'` : ''}` });
  }
  const target: JobTarget = { ...(vm ? { vm } : {}), ...(source ? { source } : {}) };
  const label = vm ? `Back up ${vm}` : source ? `Back up source ${source}` : 'Back up every source';
  return queueJob(db, queue, { kind: 'backup', target, label, actor: options.actor, audit: { action: 'backup.request', target: vm ?? source ?? 'all sources' } });
}

/** Queues a scan of a source: its VMs, disks, pointers and problems, read from headers only. */
export async function requestScan(db: Catalog, queue: PgBoss, options: { actor: string; source: string }): Promise<{ job: JobView; alreadyQueued: boolean }> {
  if (!(await db.source.findUnique({ where: { name: options.source } }))) throw new AppError('NOT_FOUND', { message: `no source named '${options.source}'` });
  return queueJob(db, queue, {
    kind: 'scan', target: { source: options.source }, label: `Scan source ${options.source}`, actor: options.actor,
    audit: { action: 'source.scan', target: options.source },
  });
}

/** Queues a job of any kind (one of that kind and target already queued or running is returned instead). */
export async function queueJob(
  db: Catalog, queue: PgBoss,
  options: { kind: JobKind; target: JobTarget; label: string; actor: string; audit: { action: string; target: string } },
): Promise<{ job: JobView; alreadyQueued: boolean }> {
  const { kind, target, label } = options;
  const active = await db.job.findFirst({ where: { kind, state: { in: ['queued', 'running'] }, target: { equals: target } } });
  if (active) return { job: toView(active), alreadyQueued: true };
  const job = await db.$transaction(async (tx) => {
    const created = await tx.job.create({ data: { kind, target, label, requestedBy: options.actor } });
    await recordAudit(tx, { actor: options.actor, action: options.audit.action, target: options.audit.target, detail: { jobId: created.id } });
    return created;
  });
  try {
    await queue.send(JOB_QUEUE, { jobId: job.id } satisfies QueuedJobData, { ...JOB_SEND_OPTIONS, id: job.id });
  } catch (err) {
    await db.job.update({ where: { id: job.id }, data: { state: 'failed', finishedAt: new Date(), error: `could not be queued: ${(err as Error).message}` } });
    throw new AppError('INTERNAL', { message: `the job queue refused the job: ${(err as Error).message}`, cause: err });
  }
  return { job: toView(job), alreadyQueued: false };
}

export async function listJobs(db: Catalog, options: { limit?: number } = {}): Promise<JobView[]> {
  await failStaleJobs(db);
  const jobs = await db.job.findMany({ orderBy: { createdAt: 'desc' }, take: options.limit ?? 50 });
  return jobs.map(toView);
}

export async function getJob(db: Catalog, id: string): Promise<JobView> {
  await failStaleJobs(db);
  const job = await db.job.findUnique({ where: { id } });
  if (!job) throw new AppError('NOT_FOUND', { message: 'no such job' });
  return toView(job);
}

/** Marks running jobs whose worker stopped reporting as failed; returns their ids. */
export async function failStaleJobs(db: Catalog): Promise<string[]> {
  const staleSeconds = jobStaleSeconds();
  const stale = await db.job.findMany({
    where: { state: 'running', heartbeatAt: { lt: new Date(Date.now() - staleSeconds * 1000) } },
    select: { id: true, label: true },
  });
  for (const job of stale) {
    const error = `the worker stopped during the job (no sign of life for ${staleSeconds} s); run it again: what was stored is reused`;
    const { count } = await db.job.updateMany({ where: { id: job.id, state: 'running' }, data: { state: 'failed', finishedAt: new Date(), error } });
    if (!count) continue;
    // A restore request run by that job ends with it (a restore leaves nothing under a final name until done).
    await db.restoreRequest.updateMany({ where: { jobId: job.id, status: { in: ['approved', 'running'] } }, data: { status: 'failed', error } });
    await recordAudit(db, { actor: 'system', action: 'job.failed', target: job.label, detail: { jobId: job.id, reason: 'worker stopped' } });
  }
  return stale.map((job) => job.id);
}
