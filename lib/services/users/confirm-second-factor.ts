import { acceptedTotpStep, openTotpSecret } from '../../auth/second-factor';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { recordAudit } from '../../catalog/audit';
import { findUser } from './find-user';

/** The first valid code turns the second factor on; that code's time step counts as used. */
export async function confirmSecondFactor(db: Catalog, options: { userId: string; code: string }): Promise<void> {
  const user = await findUser(db, options.userId);
  if (user.totpEnabledAt) throw new AppError('CONFLICT', { message: 'two-step sign-in is on already' });
  const secret = user.totpSecret ? openTotpSecret(user.totpSecret, user.id) : undefined;
  if (!secret) throw new AppError('CONFLICT', { message: 'start the set-up again: no secret is being enrolled' });
  const step = await acceptedTotpStep({ secret, code: options.code });
  if (step === undefined) {
    await recordAudit(db, { actor: user.username, action: 'user.2fa-enrol-failed', target: user.username, detail: { reason: 'wrong code' } });
    throw new AppError('BAD_INPUT', { message: 'That code does not match. Check that the phone’s clock is right and type the code shown now.' });
  }
  // Only the secret that was checked: a set-up started again in another tab meanwhile has replaced it.
  const { count } = await db.user.updateMany({
    where: { id: user.id, totpEnabledAt: null, totpSecret: user.totpSecret },
    data: { totpEnabledAt: new Date(), totpLastStep: step },
  });
  if (count === 0) throw new AppError('CONFLICT', { message: 'the set-up was started again meanwhile: use the newest secret' });
  await recordAudit(db, { actor: user.username, action: 'user.2fa-enrol', target: user.username });
}
