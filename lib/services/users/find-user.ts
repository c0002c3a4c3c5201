import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';

export async function findUser(db: Catalog, userId: string) {
  const user = await db.user.findUnique({ where: { id: userId } });
  if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
  return user;
}
