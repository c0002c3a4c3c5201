import { hashPassword } from '../../auth/passwords';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import type { TCreateUser } from '../../validation/users';
import { recordAudit } from '../../catalog/audit';

export async function createUser(db: Catalog, options: { actor: string; user: TCreateUser }): Promise<{ id: string }> {
  const { username, email, role, password } = options.user;
  const passwordHash = password ? await hashPassword(password) : null;
  try {
    return await db.$transaction(async (tx) => {
      const created = await tx.user.create({ data: { username, email: email ?? null, role, passwordHash }, select: { id: true } });
      await recordAudit(tx, { actor: options.actor, action: 'user.create', target: username, detail: { role, email: email ?? null, singleSignOnOnly: !password } });
      return created;
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') throw new AppError('CONFLICT', { message: `a user named '${username}'${email ? ` or with email ${email}` : ''} already exists` });
    throw err;
  }
}
