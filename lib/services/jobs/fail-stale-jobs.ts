import { jobStaleSeconds } from '../../config';
import type { Catalog } from '../../catalog/db';
import { recordAudit } from '../../catalog/audit';
import { retryAfter } from './scheduled-jobs';

/** Marks running jobs whose worker stopped reporting as failed; returns them (their id, and the lane they were queued in). */
export async function failStaleJobs(db: Catalog): Promise<{ id: string; lane: string }[]> {
  const staleSeconds = jobStaleSeconds();
  const stale = await db.job.findMany({
    where: { state: 'running', heartbeatAt: { lt: new Date(Date.now() - staleSeconds * 1000) } },
    select: { id: true, label: true, scheduledJobId: true, attempt: true, lane: true, target: true },
  });
  const error = `the worker stopped during the job (no sign of life for ${staleSeconds} s); run it again: what was stored is reused`;
  for (const job of stale) await failUnfinishedJob(db, job, { from: 'running', error, reason: 'worker stopped' });
  return stale.map((job) => ({ id: job.id, lane: job.lane }));
}

export type UnfinishedJob = { id: string; label: string; scheduledJobId: string | null; attempt: number; target: unknown };

/**
 * Fails a job that will not end by itself (its worker died, its source is gone, the queue lost it), if it is still
 * `from`: a scheduled run is tried again like any failed run (the next worker makes the retry), a restore request it
 * ran ends with it (a restore leaves nothing under a final name until done), and the audit log names both.
 */
export async function failUnfinishedJob(db: Catalog, job: UnfinishedJob, options: { from: 'running' | 'queued'; error: string; reason: string }): Promise<boolean> {
  const { error } = options;
  const finishedAt = new Date();
  const scheduled = job.scheduledJobId ? await db.scheduledJob.findUnique({ where: { id: job.scheduledJobId } }) : null;
  const retryAt = scheduled ? retryAfter(scheduled, job.attempt, finishedAt) : null;
  const { count } = await db.job.updateMany({ where: { id: job.id, state: options.from }, data: { state: 'failed', finishedAt, error, retryAt } });
  if (!count) return false;
  await db.restoreRequest.updateMany({ where: { jobId: job.id, status: { in: ['approved', 'running'] } }, data: { status: 'failed', error } });
  const requestId = (job.target as { requestId?: string } | null)?.requestId;
  await recordAudit(db, { actor: 'system', action: 'job.failed', target: job.label, detail: { jobId: job.id, reason: options.reason, ...(requestId ? { requestId } : {}) } });
  return true;
}
