import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { JOB_QUEUE, JOB_SEND_OPTIONS, type QueuedJobData } from '../../jobs/queue';
import { recordAudit } from '../../catalog/audit';
import { type JobKind, type JobTarget, type JobView, toJobView } from './job-view';

/** Queues a job of any kind (one of that kind and target already queued or running is returned instead). */
export async function queueJob(
  db: Catalog, queue: PgBoss,
  options: { kind: JobKind; target: JobTarget; label: string; actor: string; audit: { action: string; target: string }; scheduledJobId?: string; attempt?: number },
): Promise<{ job: JobView; alreadyQueued: boolean }> {
  const { kind, target, label } = options;
  const active = await db.job.findFirst({ where: { kind, state: { in: ['queued', 'running'] }, target: { equals: target } } });
  if (active) return { job: toJobView(active), alreadyQueued: true };
  const job = await db.$transaction(async (tx) => {
    const created = await tx.job.create({ data: { kind, target, label, requestedBy: options.actor, scheduledJobId: options.scheduledJobId, attempt: options.attempt } });
    await recordAudit(tx, { actor: options.actor, action: options.audit.action, target: options.audit.target, detail: { jobId: created.id } });
    return created;
  });
  try {
    await queue.send(JOB_QUEUE, { jobId: job.id } satisfies QueuedJobData, { ...JOB_SEND_OPTIONS, id: job.id });
  } catch (err) {
    await db.job.update({ where: { id: job.id }, data: { state: 'failed', finishedAt: new Date(), error: `could not be queued: ${(err as Error).message}` } });
    throw new AppError('INTERNAL', { message: `the job queue refused the job: ${(err as Error).message}`, cause: err });
  }
  return { job: toJobView(job), alreadyQueued: false };
}
