import type { Catalog } from '../../catalog/db';

export type AuditRow = { id: string; at: Date; actor: string; action: string; target: string; detail: unknown };

export async function listAudit(db: Catalog, options: { limit?: number; action?: string } = {}): Promise<AuditRow[]> {
  const rows = await db.auditEvent.findMany({
    where: options.action ? { action: { startsWith: options.action } } : undefined,
    orderBy: { id: 'desc' },
    take: options.limit ?? 200,
  });
  return rows.map((row) => ({ id: row.id.toString(), at: row.at, actor: row.actor, action: row.action, target: row.target, detail: row.detail }));
}
