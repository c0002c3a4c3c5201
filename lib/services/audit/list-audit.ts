import type { Catalog } from '../../catalog/db';

/** A restore request's id as the audit filter takes it. */
export const AUDIT_REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type AuditRow = { id: string; at: Date; actor: string; action: string; target: string; detail: unknown };

export type AuditQuery = {
  limit?: number;
  /** Events whose action starts with this ('restore.', 'denied'). */
  action?: string;
  /** The events of one restore request (those naming it in their detail: request, decision, job, outcome). */
  requestId?: string;
  /** A page: events older than this id (newest first). */
  before?: string;
};

/** A page of the audit log, newest first; `older`: the id to ask `before` for the next page, when there is one. */
export async function listAuditPage(db: Catalog, query: AuditQuery): Promise<{ events: AuditRow[]; older?: string }> {
  const limit = query.limit ?? 100;
  // A cursor past any id there can be (int8) is the first page, not an error.
  const before = query.before && /^\d{1,19}$/.test(query.before) && BigInt(query.before) <= 2n ** 63n - 1n ? BigInt(query.before) : undefined;
  const rows = await db.auditEvent.findMany({
    where: {
      ...(query.action ? { action: { startsWith: query.action } } : {}),
      ...(query.requestId ? { detail: { path: ['requestId'], equals: query.requestId } } : {}),
      ...(before !== undefined ? { id: { lt: before } } : {}),
    },
    orderBy: { id: 'desc' },
    take: limit + 1,
  });
  const events = rows.slice(0, limit).map((row) => ({ id: row.id.toString(), at: row.at, actor: row.actor, action: row.action, target: row.target, detail: row.detail }));
  return { events, ...(rows.length > limit ? { older: events[events.length - 1].id } : {}) };
}

export async function listAudit(db: Catalog, options: AuditQuery = {}): Promise<AuditRow[]> {
  return (await listAuditPage(db, { ...options, limit: options.limit ?? 200 })).events;
}
