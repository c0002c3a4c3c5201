import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { type JobView, toJobView } from './job-view';
import { failStaleJobs } from './fail-stale-jobs';

export async function getJob(db: Catalog, id: string): Promise<JobView> {
  await failStaleJobs(db);
  const job = await db.job.findUnique({ where: { id } });
  if (!job) throw new AppError('NOT_FOUND', { message: 'no such job' });
  return toJobView(job);
}
