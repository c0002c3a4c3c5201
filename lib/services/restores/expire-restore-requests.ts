import type { Catalog } from '../../catalog/db';
import { recordAudit } from '../../catalog/audit';

/** Requests nobody decided on in time expire (checked whenever requests are read or decided). */
export async function expireRestoreRequests(db: Catalog): Promise<void> {
  const expired = await db.restoreRequest.findMany({ where: { status: 'awaiting-approval', expiresAt: { lt: new Date() } }, select: { id: true, vm: true } });
  for (const request of expired) {
    const { count } = await db.restoreRequest.updateMany({ where: { id: request.id, status: 'awaiting-approval' }, data: { status: 'expired' } });
    if (count) await recordAudit(db, { actor: 'system', action: 'restore.expire', target: request.vm, detail: { requestId: request.id } });
  }
}
