import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { recordAudit } from '../../catalog/audit';

/**
 * An admin (or the CLI) removes a user's second factor, e.g. for a lost phone: the user signs in with their
 * password alone and may enrol again; their sessions end, in case the phone went with one.
 */
export async function resetSecondFactor(db: Catalog, options: { actor: string; userId: string }): Promise<{ username: string; hadSecondFactor: boolean }> {
  return db.$transaction(async (tx) => {
    const user = await tx.user.findUnique({ where: { id: options.userId } });
    if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
    const hadSecondFactor = user.totpEnabledAt !== null;
    await tx.user.update({
      where: { id: user.id },
      data: { totpSecret: null, totpEnabledAt: null, totpLastStep: null, ...(hadSecondFactor ? { sessionVersion: { increment: 1 } } : {}) },
    });
    await recordAudit(tx, { actor: options.actor, action: 'user.2fa-reset', target: user.username, detail: { hadSecondFactor } });
    return { username: user.username, hadSecondFactor };
  });
}
