import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { type RestoreRequestView, toRestoreRequestView } from './restore-request-view';
import { expireRestoreRequests } from './expire-restore-requests';

export async function getRestoreRequest(db: Catalog, id: string): Promise<RestoreRequestView> {
  await expireRestoreRequests(db);
  const row = await db.restoreRequest.findUnique({ where: { id } });
  if (!row) throw new AppError('NOT_FOUND', { message: 'no such restore request' });
  return toRestoreRequestView(row);
}
