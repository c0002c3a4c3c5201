import type { Catalog } from '../../catalog/db';
import { type JobView, toJobView } from './job-view';
import { failStaleJobs } from './fail-stale-jobs';

export async function listJobs(db: Catalog, options: { limit?: number } = {}): Promise<JobView[]> {
  await failStaleJobs(db);
  const jobs = await db.job.findMany({ orderBy: { createdAt: 'desc' }, take: options.limit ?? 50 });
  return jobs.map(toJobView);
}
