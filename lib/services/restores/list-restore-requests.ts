import type { Catalog } from '../../catalog/db';
import { type RestoreRequestView, toRestoreRequestView } from './restore-request-view';
import { expireRestoreRequests } from './expire-restore-requests';

export async function listRestoreRequests(db: Catalog, options: { limit?: number } = {}): Promise<RestoreRequestView[]> {
  await expireRestoreRequests(db);
  const rows = await db.restoreRequest.findMany({ orderBy: { createdAt: 'desc' }, take: options.limit ?? 100 });
  return rows.map(toRestoreRequestView);
}
