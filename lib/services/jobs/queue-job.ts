import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { JOB_SEND_OPTIONS, type QueuedJobData, ensureQueue, jobQueueOf, laneText } from '../../jobs/queue';
import { recordAudit } from '../../catalog/audit';
import { type JobKind, type JobTarget, type JobView, toJobView } from './job-view';
import { jobLane } from './job-lane';
import { laneIsServed, waitingMessage } from './workers';

/** Queues a job of any kind (one of that kind and target already queued or running is returned instead; for a
 *  scheduled job, any run of it), on the queue of the workers that can run it. */
export async function queueJob(
  db: Catalog, queue: PgBoss,
  options: { kind: JobKind; target: JobTarget; label: string; actor: string; audit: { action: string; target: string }; scheduledJobId?: string; attempt?: number },
): Promise<{ job: JobView; alreadyQueued: boolean }> {
  const { kind, target, label } = options;
  const active = await db.job.findFirst({ where: { kind, state: { in: ['queued', 'running'] }, target: { equals: target } } });
  if (active) return { job: toJobView(active), alreadyQueued: true };
  const lane = await jobLane(db, kind, target);
  // Said at once rather than found out after hours of 'queued': no live worker takes this job (it waits for one).
  const message = (await laneIsServed(db, lane, 'jobs')) ? '' : waitingMessage(lane);
  const made = await db.$transaction(async (tx) => {
    if (options.scheduledJobId) {
      // One run of a scheduled job at a time, also when it is queued from two places at once (its schedule on one
      // worker, its retry on another, someone's Run now): the queuings of one job take turns on its row, and each
      // looks for a run of it only once it holds it (the check above alone let all three through).
      await tx.$queryRaw`SELECT 1 FROM "ScheduledJob" WHERE "id" = ${options.scheduledJobId} FOR UPDATE`;
      const running = await tx.job.findFirst({ where: { scheduledJobId: options.scheduledJobId, state: { in: ['queued', 'running'] } } });
      if (running) return { running };
    }
    const created = await tx.job.create({ data: { kind, target, label, requestedBy: options.actor, scheduledJobId: options.scheduledJobId, attempt: options.attempt, lane: laneText(lane), message } });
    await recordAudit(tx, { actor: options.actor, action: options.audit.action, target: options.audit.target, detail: { jobId: created.id, ...(target.requestId ? { requestId: target.requestId } : {}) } });
    if (options.scheduledJobId) await tx.scheduledJob.updateMany({ where: { id: options.scheduledJobId }, data: { lastRunJobId: created.id } });
    return { created };
  });
  if (made.running) return { job: toJobView(made.running), alreadyQueued: true };
  const job = made.created!;
  try {
    const name = jobQueueOf(lane);
    await ensureQueue(queue, name);
    await queue.send(name, { jobId: job.id } satisfies QueuedJobData, { ...JOB_SEND_OPTIONS, id: job.id });
  } catch (err) {
    await db.job.update({ where: { id: job.id }, data: { state: 'failed', finishedAt: new Date(), error: `could not be queued: ${(err as Error).message}` } });
    throw new AppError('INTERNAL', { message: `the job queue refused the job: ${(err as Error).message}`, cause: err });
  }
  return { job: toJobView(job), alreadyQueued: false };
}
