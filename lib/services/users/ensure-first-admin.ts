import { generatePassword, hashPassword } from '../../auth/passwords';
import type { Catalog } from '../../catalog/db';
import { recordAudit } from '../../catalog/audit';

/**
 * First start: with no user at all, creates `admin` with `password` (VMDEDUP_ADMIN_PASSWORD), else a
 * generated one that the caller prints once. Returns undefined when users exist.
 */
export async function ensureFirstAdmin(db: Catalog, options: { password?: string }): Promise<{ username: string; password: string; generated: boolean } | undefined> {
  if ((await db.user.count()) > 0) return undefined;
  const password = options.password || generatePassword();
  try {
    await db.$transaction(async (tx) => {
      await tx.user.create({ data: { username: 'admin', role: 'admin', passwordHash: await hashPassword(password) } });
      await recordAudit(tx, { actor: 'system', action: 'user.create', target: 'admin', detail: { role: 'admin', firstStart: true } });
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') return undefined; // another process created it first
    throw err;
  }
  return { username: 'admin', password, generated: !options.password };
}
