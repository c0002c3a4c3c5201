/**
 * The workers' look at jobs still queued (each sweep): a job whose source is gone (renamed or removed since) is failed,
 * one the queue lost (taken by a worker that died before it could start it, or cut off from the catalog then) is
 * failed, and each says whether a live worker can take it. Without this such jobs stayed 'queued' forever, and a
 * scheduled job with a run queued is never queued again.
 */
import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { type Lane, jobQueueOf, parseLane } from '../../jobs/queue';
import { failUnfinishedJob } from './fail-stale-jobs';
import { laneServedBy, listWorkers, waitingMessage } from './workers';

/** A job taken from the queue but not started for this long was lost by its worker. */
const LOST_AFTER_MS = 120_000;

export async function reviewQueuedJobs(db: Catalog, queue: PgBoss): Promise<void> {
  const queued = await db.job.findMany({ where: { state: 'queued' }, select: { id: true, label: true, lane: true, message: true, scheduledJobId: true, attempt: true, target: true } });
  if (queued.length === 0) return;
  const sources = new Set((await db.source.findMany({ select: { name: true } })).map((source) => source.name));
  const workers = await listWorkers(db);
  for (const job of queued) {
    const lane = parseLane(job.lane);
    if (lane.kind === 'source' && !sources.has(lane.source)) {
      await failUnfinishedJob(db, job, { from: 'queued', error: `source '${lane.source}' no longer exists (renamed or removed after this job was queued): queue it again`, reason: 'source gone' });
      await queue.cancel(jobQueueOf(lane), job.id).catch(() => undefined);
      continue;
    }
    if (await lostByQueue(queue, lane, job.id)) {
      await failUnfinishedJob(db, job, { from: 'queued', error: 'the job queue lost it (the worker that took it stopped before starting it): queue it again', reason: 'lost' });
      continue;
    }
    const served = laneServedBy(workers, lane, 'jobs');
    const waiting = waitingMessage(lane);
    if (!served && job.message !== waiting) await db.job.updateMany({ where: { id: job.id, state: 'queued' }, data: { message: waiting } });
    else if (served && job.message === waiting) await db.job.updateMany({ where: { id: job.id, state: 'queued' }, data: { message: '' } });
  }
}

/** pg-boss no longer holds the job as waiting, and nobody started it: taken long ago, or ended without it running. */
async function lostByQueue(queue: PgBoss, lane: Lane, id: string): Promise<boolean> {
  const held = await queue.getJobById(jobQueueOf(lane), id, { includeArchive: true });
  if (!held) return false; // not known there (sent before lanes to another queue, say): left as it is
  if (held.state === 'created' || held.state === 'retry') return false;
  const since = held.state === 'active' ? held.startedOn : (held.completedOn ?? held.startedOn);
  return Date.now() - new Date(since ?? held.createdOn).getTime() > LOST_AFTER_MS;
}
