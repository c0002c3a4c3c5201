import type { Catalog } from '../db';
import type { Prisma } from '../generated/prisma/client';

export type AuditEntry = { actor: string; action: string; target?: string; detail?: Prisma.InputJsonValue };

/** Appends one event to the audit log (the table refuses updates and deletes). */
export async function recordAudit(db: Catalog | Prisma.TransactionClient, entry: AuditEntry): Promise<void> {
  await db.auditEvent.create({ data: { actor: entry.actor, action: entry.action, target: entry.target ?? '', detail: entry.detail ?? {} } });
}

export type AuditRow = { id: string; at: Date; actor: string; action: string; target: string; detail: unknown };

export async function listAudit(db: Catalog, options: { limit?: number; action?: string } = {}): Promise<AuditRow[]> {
  const rows = await db.auditEvent.findMany({
    where: options.action ? { action: { startsWith: options.action } } : undefined,
    orderBy: { id: 'desc' },
    take: options.limit ?? 200,
  });
  return rows.map((row) => ({ ...row, id: row.id.toString() }));
}
