/** Queuing a run of a scheduled job: by its schedule, by a retry, or by someone's "Run now" (one place for all three). */
import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import type { JobTarget, JobView } from './job-view';
import { queueJob } from './queue-job';
import type { ScheduledJobRow, ScheduledKind } from './scheduled-jobs';

const LABELS: Record<ScheduledKind, string> = { backup: 'Backup job', gc: 'Garbage collection', verify: 'Verify job', sync: 'Sync job' };

export type ScheduledRunRequest = {
  actor: string;
  /** Audit action: `<kind>.scheduled` (its schedule), `<kind>.retry`, `<kind>.request` (someone asked). */
  why: 'scheduled' | 'retry' | 'request';
  /** A retry: its attempt (2 for the first retry), and, for a backup, the VMs the failed run did not back up. */
  attempt?: number;
  retries?: number;
  onlyVms?: { source: string; vm: string }[];
};

/** Queues one run of `job`; a run of it already queued or running is returned instead (one run of a job at a time). */
export async function queueScheduledRun(db: Catalog, queue: PgBoss, job: ScheduledJobRow, request: ScheduledRunRequest): Promise<{ job: JobView; alreadyQueued: boolean }> {
  const kind = job.kind as ScheduledKind;
  const attempt = request.attempt ?? 1;
  const target: JobTarget = { scheduledJob: job.name, ...(request.onlyVms?.length ? { onlyVms: request.onlyVms } : {}) };
  const retry = attempt > 1 ? ` (retry ${attempt - 1} of ${request.retries ?? attempt - 1}${request.onlyVms?.length ? `: ${request.onlyVms.length} VM${request.onlyVms.length === 1 ? '' : 's'}` : ''})` : '';
  // queueJob looks for a run of the job under its row lock, and makes the new run its last one.
  return queueJob(db, queue, {
    kind, target, label: `${LABELS[kind]} ${job.name}${retry}`, actor: request.actor,
    audit: { action: `${kind}.${request.why}`, target: job.name }, scheduledJobId: job.id, attempt,
  });
}
