'use client';

import { useRouter } from 'next/navigation';
import { useEffect, useRef } from 'react';
import type { JobView } from '@/lib/services/jobs/job-view';
import { formatBytes, formatDuration } from '@/lib/format';
import { isActiveJob, useJobs } from './use-jobs';
import { LocalTime } from '@/components/ui/local-time';

const STATE_STYLE: Record<JobView['state'], string> = {
  queued: 'bg-slate-100 text-slate-700',
  running: 'bg-blue-100 text-blue-800',
  succeeded: 'bg-green-100 text-green-800',
  partial: 'bg-amber-100 text-amber-800',
  failed: 'bg-red-100 text-red-800',
};

export function JobProgress({ job }: { job: JobView }) {
  const percent = job.bytesTotal > 0 ? Math.min(100, Math.round((job.bytesDone / job.bytesTotal) * 100)) : job.state === 'succeeded' ? 100 : 0;
  return (
    <div>
      <div role="progressbar" aria-label={`${job.label} progress`} aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent} className="h-2 w-full overflow-hidden rounded bg-slate-200">
        <div className="h-full bg-blue-600 transition-all" style={{ width: `${percent}%` }} />
      </div>
      <div className="mt-1 flex flex-wrap gap-x-3 text-xs text-slate-600">
        <span>{percent}%</span>
        {job.bytesTotal > 0
          ? <span>{formatBytes(job.bytesDone)} of {formatBytes(job.bytesTotal)}</span>
          : job.state === 'succeeded' && job.kind === 'backup' && <span>nothing to read: every disk was unchanged and is referenced</span>}
        {job.bytesPerSecond > 0 && <span>{formatBytes(job.bytesPerSecond)}/s</span>}
        {job.etaSeconds !== null && <span>ETA {formatDuration(job.etaSeconds)}</span>}
        {isActiveJob(job) && job.message && <span className="truncate">{job.message}</span>}
      </div>
    </div>
  );
}

export function JobList({ initialJobs, idlePollMs }: { initialJobs: JobView[]; idlePollMs?: number }) {
  const { data: jobs, error } = useJobs(initialJobs, idlePollMs);
  const router = useRouter();
  // Whether each job was active when last seen; a job first seen already ended (a quick scan that finished
  // between two polls) counts as having ended too.
  const wasActive = useRef(new Map(initialJobs.map((job) => [job.id, isActiveJob(job)])));
  // When a job ends, the server-rendered parts of the page (VM counts, backup images) are refreshed.
  useEffect(() => {
    const ended = jobs.some((job) => !isActiveJob(job) && wasActive.current.get(job.id) !== false);
    wasActive.current = new Map(jobs.map((job) => [job.id, isActiveJob(job)]));
    if (ended) router.refresh();
  }, [jobs, router]);

  return (
    <section aria-labelledby="jobs-heading">
      <h2 id="jobs-heading" className="mb-3 text-lg font-semibold">Jobs</h2>
      {error && <p className="mb-2 text-sm text-red-700">{error.message}</p>}
      {jobs.length === 0 ? (
        <p className="text-slate-500">No jobs yet.</p>
      ) : (
        <ul className="divide-y divide-slate-200 rounded-lg border border-slate-200 bg-white">
          {jobs.map((job) => (
            <li key={job.id} className="space-y-2 p-4" data-testid="job" aria-label={job.label}>
              <div className="flex flex-wrap items-center gap-3 text-sm">
                <span className="font-medium">{job.label}</span>
                <span data-testid="job-state" className={`rounded px-2 py-0.5 text-xs ${STATE_STYLE[job.state]}`}>{job.state}</span>
                <span className="text-slate-500">by {job.requestedBy}, <LocalTime iso={job.createdAt} /></span>
                {job.finishedAt && job.startedAt && <span className="text-slate-500">took {formatDuration((Date.parse(job.finishedAt) - Date.parse(job.startedAt)) / 1000)}</span>}
              </div>
              {job.state !== 'queued' && <JobProgress job={job} />}
              {!isActiveJob(job) && job.message && <p className="text-sm text-slate-700">{job.message}</p>}
              {job.error && <p className="text-sm text-red-700">{job.error}</p>}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
