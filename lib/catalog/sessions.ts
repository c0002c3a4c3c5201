import type { Catalog } from './db';
import { recordAudit } from './audit';

/**
 * Ends one session for good: its id is kept until the session's absolute end (after which its token is refused
 * anyway), so a copy of its cookie stops working at once. Idempotent; expired ids are swept on the way.
 */
export async function revokeSession(db: Catalog, options: { sessionId: string; expiresAt: Date; username?: string }): Promise<void> {
  await db.$transaction([
    db.revokedSession.deleteMany({ where: { expiresAt: { lt: new Date() } } }),
    db.revokedSession.upsert({ where: { id: options.sessionId }, create: { id: options.sessionId, expiresAt: options.expiresAt }, update: {} }),
  ]);
  if (options.username) await recordAudit(db, { actor: options.username, action: 'sign-out', target: options.username });
}

export async function isSessionRevoked(db: Catalog, sessionId: string): Promise<boolean> {
  return (await db.revokedSession.count({ where: { id: sessionId } })) > 0;
}
