import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import type { RestoreTarget } from '../../engine/restore/plan';
import { queueJob } from '../jobs/queue-job';

export async function startRestore(db: Catalog, queue: PgBoss, options: { actor: string; requestId: string }) {
  const request = await db.restoreRequest.findUniqueOrThrow({ where: { id: options.requestId } });
  const target = request.target as RestoreTarget;
  const { job } = await queueJob(db, queue, {
    kind: 'restore', target: { requestId: request.id }, label: `Restore ${request.vm}${target.kind === 'in-place' ? ' in place' : ` into ${target.dir}`}`,
    actor: options.actor, audit: { action: 'restore.queue', target: request.vm },
  });
  return db.restoreRequest.update({ where: { id: request.id }, data: { jobId: job.id } });
}
