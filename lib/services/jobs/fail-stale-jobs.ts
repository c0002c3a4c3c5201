import { jobStaleSeconds } from '../../config';
import type { Catalog } from '../../catalog/db';
import { recordAudit } from '../../catalog/audit';

/** Marks running jobs whose worker stopped reporting as failed; returns their ids. */
export async function failStaleJobs(db: Catalog): Promise<string[]> {
  const staleSeconds = jobStaleSeconds();
  const stale = await db.job.findMany({
    where: { state: 'running', heartbeatAt: { lt: new Date(Date.now() - staleSeconds * 1000) } },
    select: { id: true, label: true },
  });
  for (const job of stale) {
    const error = `the worker stopped during the job (no sign of life for ${staleSeconds} s); run it again: what was stored is reused`;
    const { count } = await db.job.updateMany({ where: { id: job.id, state: 'running' }, data: { state: 'failed', finishedAt: new Date(), error } });
    if (!count) continue;
    // A restore request run by that job ends with it (a restore leaves nothing under a final name until done).
    await db.restoreRequest.updateMany({ where: { jobId: job.id, status: { in: ['approved', 'running'] } }, data: { status: 'failed', error } });
    await recordAudit(db, { actor: 'system', action: 'job.failed', target: job.label, detail: { jobId: job.id, reason: 'worker stopped' } });
  }
  return stale.map((job) => job.id);
}
