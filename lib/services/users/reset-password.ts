import { hashPassword } from '../../auth/passwords';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import type { TResetPassword } from '../../validation/users';
import { recordAudit } from '../../catalog/audit';

/** Sets a new password: unlocks the account and ends the user's existing sessions. */
export async function resetPassword(db: Catalog, options: { actor: string; reset: TResetPassword }): Promise<void> {
  const passwordHash = await hashPassword(options.reset.password);
  await db.$transaction(async (tx) => {
    const user = await tx.user.findUnique({ where: { id: options.reset.userId } });
    if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
    await tx.user.update({ where: { id: user.id }, data: { passwordHash, failedSignIns: 0, lockedUntil: null, sessionVersion: { increment: 1 } } });
    await recordAudit(tx, { actor: options.actor, action: 'user.reset-password', target: user.username });
  });
}
