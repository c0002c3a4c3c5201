import type { Catalog, CatalogSql } from '../db';
import type { TAddSource, TEditSource } from '../validation/sources';
import { recordAudit } from './audit';
import type { SourceProblem } from './record-inventory';
import { addSource, removeSource, updateSource } from './sources';

export type SourceView = {
  id: string; name: string; type: string; path: string; scannedAt: string | null;
  vms: number; vmsProtected: number; problems: SourceProblem[];
};

export async function listSourceViews(db: Catalog): Promise<SourceView[]> {
  const sources = await db.source.findMany({
    orderBy: { name: 'asc' },
    include: { vms: { select: { _count: { select: { backups: true } } } } },
  });
  return sources.map((s) => ({
    id: s.id, name: s.name, type: s.type, path: s.path, scannedAt: s.scannedAt?.toISOString() ?? null,
    vms: s.vms.length, vmsProtected: s.vms.filter((vm) => vm._count.backups > 0).length, problems: s.problems as SourceProblem[],
  }));
}

export async function createSource(db: Catalog, sql: CatalogSql, options: { actor: string; source: TAddSource }): Promise<{ id: string; name: string }> {
  const created = await addSource(sql, options.source);
  await recordAudit(db, { actor: options.actor, action: 'source.create', target: created.name, detail: { type: created.type, path: created.path } });
  return { id: created.id, name: created.name };
}

export async function editSource(db: Catalog, sql: CatalogSql, options: { actor: string; source: TEditSource }): Promise<void> {
  const before = await db.source.findUnique({ where: { id: options.source.id } });
  const after = await updateSource(sql, options.source);
  await recordAudit(db, {
    actor: options.actor, action: 'source.update', target: after.name,
    detail: { before: before && { name: before.name, type: before.type, path: before.path }, after: { name: after.name, type: after.type, path: after.path } },
  });
}

export async function deleteSource(db: Catalog, sql: CatalogSql, options: { actor: string; id: string }): Promise<void> {
  const removed = await removeSource(sql, { id: options.id });
  await recordAudit(db, { actor: options.actor, action: 'source.delete', target: removed.name, detail: { type: removed.type, path: removed.path } });
}
