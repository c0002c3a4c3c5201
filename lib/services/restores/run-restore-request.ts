import type { Catalog, CatalogSql } from '../../catalog/db';
import type { Repository } from '../../engine/repository/repository';
import { AppError, toAppError } from '../../errors';
import { recordAudit } from '../../catalog/audit';
import { checkRestoreRoots } from './check-restore-roots';
import { plannedInputOf } from './restore-request-view';
import { restoreVm } from './restore-vm';

/**
 * The worker's part: runs an approved request, but only if the live state still gives the plan that was
 * confirmed (else nothing is written and the request says so: ask again). Returns the job's outcome.
 */
export async function runRestoreRequest(
  db: Catalog, sql: CatalogSql, repo: Repository,
  options: { requestId: string; signal?: AbortSignal; onProgress?: (progress: { bytesDone: number; bytesTotal: number; disk?: string }) => void },
): Promise<{ ok: boolean; message: string; result: object; error?: string }> {
  const request = await db.restoreRequest.findUnique({ where: { id: options.requestId } });
  if (!request) throw new AppError('NOT_FOUND', { message: 'the restore request is gone' });
  // Checked again here, as root: a request row is only as trustworthy as the web server that wrote it.
  await checkRestoreRoots(plannedInputOf(request).target);
  const { count } = await db.restoreRequest.updateMany({ where: { id: request.id, status: 'approved' }, data: { status: 'running' } });
  if (count === 0) throw new AppError('CONFLICT', { message: `the restore request is ${request.status}, not approved` });
  try {
    const outcome = await restoreVm(sql, repo, {
      ...plannedInputOf(request), confined: true, confirmed: true, expectedFingerprint: request.fingerprint, signal: options.signal, onProgress: options.onProgress,
    });
    if (outcome.changedSincePlan || !outcome.result) {
      const error = `The live state changed since this restore was confirmed; nothing was written. Request it again to review the new plan: ${outcome.plan.message}`;
      await recordAudit(db, { actor: 'worker', action: 'restore.stopped', target: request.vm, detail: { requestId: request.id, reason: 'live state changed', livePlanMessage: outcome.plan.message } });
      await db.restoreRequest.update({ where: { id: request.id }, data: { status: 'changed', error } });
      return { ok: false, message: 'stopped: the live state changed since confirmation', result: {}, error };
    }
    const result = { disks: outcome.result.disks, configPath: outcome.result.configPath, bytesWritten: outcome.result.bytesWritten };
    // On record before the request says so: whoever sees it restored (the requester's page, a test) finds the event.
    await recordAudit(db, { actor: 'worker', action: 'restore.finished', target: request.vm, detail: { requestId: request.id, ...result } });
    await db.restoreRequest.update({ where: { id: request.id }, data: { status: 'restored', result } });
    const written = outcome.result.disks.filter((d) => d.verified).length;
    return { ok: true, message: `${written} disk${written === 1 ? '' : 's'} written and verified; the VM's config is ${result.configPath}`, result };
  } catch (err) {
    const error = toAppError(err).userMessage;
    await recordAudit(db, { actor: 'worker', action: 'restore.finished', target: request.vm, detail: { requestId: request.id, error } });
    await db.restoreRequest.update({ where: { id: request.id }, data: { status: 'failed', error } });
    throw err;
  }
}
