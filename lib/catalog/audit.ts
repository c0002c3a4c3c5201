/**
 * The audit log: append-only (the app role may only INSERT and SELECT; a trigger refuses UPDATE, DELETE and
 * TRUNCATE) and tamper-evident: the database chains every event to the one before it (migration
 * 20261201100000_audit_hash_chain), and verifyAuditChain proves the chain intact or names the first broken event.
 * Someone who may rewrite the table (its owner, a superuser) can still rewrite it all and recompute every hash
 * after the change: compare the last hash with one noted earlier to rule that out.
 */
import type { Catalog } from './db';
import type { Prisma } from '../generated/prisma/client';

export type AuditEntry = { actor: string; action: string; target?: string; detail?: Prisma.InputJsonValue };

/** Appends one event to the audit log (the database chains it and refuses updates and deletes). */
export async function recordAudit(db: Catalog | Prisma.TransactionClient, entry: AuditEntry): Promise<void> {
  await db.auditEvent.create({ data: { actor: entry.actor, action: entry.action, target: entry.target ?? '', detail: entry.detail ?? {} } });
}
