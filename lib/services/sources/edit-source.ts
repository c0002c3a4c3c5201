import type { Catalog,CatalogSql } from '../../catalog/db';
import type { TEditSource } from '../../validation/sources';
import { recordAudit } from '../../catalog/audit';
import { updateSource } from './update-source';

export async function editSource(db: Catalog, sql: CatalogSql, options: { actor: string; source: TEditSource }): Promise<void> {
  const before = await db.source.findUnique({ where: { id: options.source.id } });
  const after = await updateSource(sql, options.source);
  await recordAudit(db, {
    actor: options.actor, action: 'source.update', target: after.name,
    detail: { before: before && { name: before.name, type: before.type, path: before.path, storage: before.storage }, after: { name: after.name, type: after.type, path: after.path, storage: after.storage } },
  });
}
