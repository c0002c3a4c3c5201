'use client';

import { useQuery } from '@tanstack/react-query';
import type { JobView } from '@/lib/services/jobs/job-view';

export const isActiveJob = (job: JobView) => job.state === 'queued' || job.state === 'running';

/** The job list with live progress: polled every second while a job is queued or running, then not at all, or every
 *  `idlePollMs` where jobs start without this browser (a page of schedules). */
export function useJobs(initialJobs: JobView[], idlePollMs?: number) {
  return useQuery({
    queryKey: ['jobs'],
    queryFn: async (): Promise<JobView[]> => {
      const response = await fetch('/api/jobs', { cache: 'no-store' });
      if (!response.ok) throw new Error(response.status === 401 ? 'Your session has ended: sign in again.' : `jobs could not be loaded (${response.status})`);
      return ((await response.json()) as { jobs: JobView[] }).jobs;
    },
    initialData: initialJobs,
    refetchInterval: (query) => (query.state.data?.some(isActiveJob) ? 1000 : idlePollMs ?? false),
  });
}

/** One job's progress, polled every second until it ends. */
export function useJobProgress(initialJob: JobView) {
  return useQuery({
    queryKey: ['job', { jobId: initialJob.id }],
    queryFn: async (): Promise<JobView> => {
      const response = await fetch(`/api/jobs/${initialJob.id}`, { cache: 'no-store' });
      if (!response.ok) throw new Error(`the job could not be loaded (${response.status})`);
      return ((await response.json()) as { job: JobView }).job;
    },
    initialData: initialJob,
    refetchInterval: (query) => (query.state.data && isActiveJob(query.state.data) ? 1000 : false),
  });
}
