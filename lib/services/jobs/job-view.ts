import type { Prisma } from '../../generated/prisma/client';
import type { RetentionPolicy } from '../../engine/gc/retention';

export type JobState = 'queued' | 'running' | 'succeeded' | 'partial' | 'failed';

export type JobKind = 'backup' | 'scan' | 'restore' | 'gc' | 'verify' | 'prune' | 'sync';

export type JobTarget = { vm?: string; source?: string; requestId?: string; /** A scheduled job's name: what it does, on what, with which options. */ scheduledJob?: string;
  /** prune: the rules, their time zone, and the VMs (all when absent); garbage collection follows. */
  retention?: RetentionPolicy; timeZone?: string; vms?: string[]; /** prune: of this source only. */ pruneSource?: string;
  /** A scheduled backup's retry: only these VMs (those the failed run did not back up). */
  onlyVms?: { source: string; vm: string }[];
};

export type JobView = {
  id: string; kind: string; label: string; state: JobState; target: JobTarget; requestedBy: string;
  createdAt: string; startedAt: string | null; finishedAt: string | null;
  bytesDone: number; bytesTotal: number; bytesPerSecond: number; etaSeconds: number | null;
  message: string; error: string | null; result: unknown;
};

export function isFinished(state: string): boolean {
  return state === 'succeeded' || state === 'partial' || state === 'failed';
}

export function toJobView(job: Prisma.JobGetPayload<object>): JobView {
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
