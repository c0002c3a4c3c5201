import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { recordAudit } from '../../catalog/audit';
import { type RestoreRequestView, toRestoreRequestView } from './restore-request-view';
import { expireRestoreRequests } from './expire-restore-requests';

/** The requester takes back a request nobody has decided yet (a mistake, a plan overtaken by events). Only theirs. */
export async function withdrawRestore(db: Catalog, options: { actor: string; requestId: string }): Promise<RestoreRequestView> {
  await expireRestoreRequests(db); // past its expiry it is expired, not withdrawn
  const request = await db.restoreRequest.findUnique({ where: { id: options.requestId } });
  if (!request) throw new AppError('NOT_FOUND', { message: 'no such restore request' });
  if (request.requestedBy !== options.actor) {
    await recordAudit(db, { actor: options.actor, action: 'denied', target: 'withdraw-restore', detail: { requestId: request.id, reason: 'not the requester' } });
    throw new AppError('FORBIDDEN', { message: `Only ${request.requestedBy}, who asked for this restore, can withdraw it.` });
  }
  const { count } = await db.restoreRequest.updateMany({ where: { id: request.id, status: 'awaiting-approval' }, data: { status: 'withdrawn', decidedBy: options.actor, decidedAt: new Date() } });
  if (count === 0) {
    const now = await db.restoreRequest.findUniqueOrThrow({ where: { id: request.id }, select: { status: true } });
    throw new AppError('CONFLICT', { message: `This request is ${now.status}: it can no longer be withdrawn.` });
  }
  await recordAudit(db, { actor: options.actor, action: 'restore.withdraw', target: request.vm, detail: { requestId: request.id } });
  return toRestoreRequestView(await db.restoreRequest.findUniqueOrThrow({ where: { id: request.id } }));
}
