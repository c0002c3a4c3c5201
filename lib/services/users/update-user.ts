import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import type { TUpdateUser } from '../../validation/users';
import { recordAudit } from '../../catalog/audit';

/**
 * Changes a role or an email, or disables/enables a user. The last enabled admin cannot be demoted or
 * disabled; a user without a password keeps their email (their only way in). A new or removed email also
 * unbinds the user's single sign-on identity: the next single sign-on links by the new email again.
 */
export async function updateUser(db: Catalog, options: { actor: string; change: TUpdateUser }): Promise<void> {
  const { userId, role, disabled, email } = options.change;
  try {
    await db.$transaction(async (tx) => {
      // Serialises admin changes: two admins demoting each other at once cannot leave nobody in charge.
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(7466)`;
      const user = await tx.user.findUnique({ where: { id: userId } });
      if (!user) throw new AppError('NOT_FOUND', { message: 'no such user' });
      const losesAdmin = user.role === 'admin' && !user.disabled && ((role && role !== 'admin') || disabled === true);
      if (losesAdmin && (await tx.user.count({ where: { role: 'admin', disabled: false } })) <= 1) {
        throw new AppError('CONFLICT', { message: `${user.username} is the last enabled admin: make someone else admin first` });
      }
      if (email === null && user.passwordHash === null) {
        throw new AppError('CONFLICT', { message: `${user.username} has no password and signs in only by single sign-on: set a password before removing the email` });
      }
      const emailChanged = email !== undefined && email !== user.email;
      const unbinds = emailChanged && user.oidcSubject !== null;
      await tx.user.update({
        where: { id: userId },
        // Disabling ends the user's sessions at once.
        data: {
          role, disabled, email, ...(disabled === true && !user.disabled ? { sessionVersion: { increment: 1 } } : {}),
          ...(unbinds ? { oidcIssuer: null, oidcSubject: null } : {}),
        },
      });
      const changes = {
        ...(role && role !== user.role ? { role: [user.role, role] } : {}),
        ...(disabled !== undefined && disabled !== user.disabled ? { disabled: [user.disabled, disabled] } : {}),
        ...(emailChanged ? { email: [user.email, email] } : {}),
        ...(unbinds ? { singleSignOnUnbound: { issuer: user.oidcIssuer, subject: user.oidcSubject } } : {}),
      };
      await recordAudit(tx, { actor: options.actor, action: 'user.update', target: user.username, detail: changes });
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') throw new AppError('CONFLICT', { message: `another user has the email ${email}` });
    throw err;
  }
}
