import type { Catalog } from '../../catalog/db';

export async function countPendingApprovals(db: Catalog): Promise<number> {
  return db.restoreRequest.count({ where: { status: 'awaiting-approval', expiresAt: { gt: new Date() } } });
}
