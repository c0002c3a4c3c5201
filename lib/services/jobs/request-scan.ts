import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { type JobView } from './job-view';
import { queueJob } from './queue-job';

/** Queues a scan of a source: its VMs, disks, pointers and problems, read from headers only. */
export async function requestScan(db: Catalog, queue: PgBoss, options: { actor: string; source: string }): Promise<{ job: JobView; alreadyQueued: boolean }> {
  if (!(await db.source.findUnique({ where: { name: options.source } }))) throw new AppError('NOT_FOUND', { message: `no source named '${options.source}'` });
  return queueJob(db, queue, {
    kind: 'scan', target: { source: options.source }, label: `Scan source ${options.source}`, actor: options.actor,
    audit: { action: 'source.scan', target: options.source },
  });
}
