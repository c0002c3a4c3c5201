import { verifyPassword } from '../../auth/passwords';
import { acceptedTotpStep, openTotpSecret } from '../../auth/second-factor';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import { recordAudit } from '../../catalog/audit';
import { countFailure } from './count-failure';
import { findUser } from './find-user';

/**
 * The user turns their second factor off with their password and a valid code (a stolen session alone cannot);
 * a wrong one counts toward the same lock as a wrong password at sign-in.
 */
export async function disableSecondFactor(db: Catalog, options: { userId: string; password: string; code: string }): Promise<void> {
  const user = await findUser(db, options.userId);
  if (!user.totpEnabledAt || !user.totpSecret) throw new AppError('CONFLICT', { message: 'two-step sign-in is not on' });
  const passwordMatches = user.passwordHash !== null && (await verifyPassword(user.passwordHash, options.password));
  const secret = openTotpSecret(user.totpSecret, user.id);
  const step = secret ? await acceptedTotpStep({ secret, code: options.code, afterStep: user.totpLastStep }) : undefined;
  if (!passwordMatches || step === undefined) {
    const counted = await countFailure(db, user.id);
    await recordAudit(db, {
      actor: user.username, action: 'user.2fa-disable-failed', target: user.username,
      detail: { reason: !passwordMatches ? 'wrong password' : 'wrong code', ...(counted?.locked ? { locked: true, lockedUntil: counted.lockedUntil } : {}) },
    });
    throw new AppError('BAD_INPUT', { message: 'Wrong password or code: two-step sign-in stays on.' });
  }
  await db.user.update({ where: { id: user.id }, data: { totpSecret: null, totpEnabledAt: null, totpLastStep: null } });
  await recordAudit(db, { actor: user.username, action: 'user.2fa-disable', target: user.username });
}
