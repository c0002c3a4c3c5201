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
  for (const job of stale) {
    const error = `the worker stopped during the job (no sign of life for ${staleSeconds} s); run it again: what was stored is reused`;
    const finishedAt = new Date();
    // A scheduled run whose worker died is tried again like any failed run (the next worker makes the retry).
    const scheduled = job.scheduledJobId ? await db.scheduledJob.findUnique({ where: { id: job.scheduledJobId } }) : null;
    const retryAt = scheduled ? retryAfter(scheduled, job.attempt, finishedAt) : null;
    const { count } = await db.job.updateMany({ where: { id: job.id, state: 'running' }, data: { state: 'failed', finishedAt, error, retryAt } });
    if (!count) continue;
    // A restore request run by that job ends with it (a restore leaves nothing under a final name until done).
    await db.restoreRequest.updateMany({ where: { jobId: job.id, status: { in: ['approved', 'running'] } }, data: { status: 'failed', error } });
    const requestId = (job.target as { requestId?: string } | null)?.requestId;
    await recordAudit(db, { actor: 'system', action: 'job.failed', target: job.label, detail: { jobId: job.id, reason: 'worker stopped', ...(requestId ? { requestId } : {}) } });
  }
  return stale.map((job) => ({ id: job.id, lane: job.lane }));
}
