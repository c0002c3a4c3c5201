import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { type JobTarget, type JobView } from './job-view';
import { queueJob } from './queue-job';

/**
 * Queues a backup of one VM or of every VM of a source (or of all sources). A backup of the same target
 * that is already queued or running is returned instead of a second one.
 */
export async function requestBackup(db: Catalog, queue: PgBoss, options: { actor: string; target: JobTarget }): Promise<{ job: JobView; alreadyQueued: boolean }> {
  const { vm, source } = options.target;
  if (source && !(await db.source.findUnique({ where: { name: source } }))) throw new AppError('NOT_FOUND', { message: `no source named '${source}'` });
  if (vm && (await db.vm.count({ where: { name: vm, ...(source ? { source: { name: source } } : {}) } })) === 0) {
    throw new AppError('NOT_FOUND', { message: `no VM named '${vm}'${source ? ` in source '${source}'` : ''}` });
  }
  const target: JobTarget = { ...(vm ? { vm } : {}), ...(source ? { source } : {}) };
  const label = vm ? `Back up ${vm}` : source ? `Back up source ${source}` : 'Back up every source';
  return queueJob(db, queue, { kind: 'backup', target, label, actor: options.actor, audit: { action: 'backup.request', target: vm ?? source ?? 'all sources' } });
}
