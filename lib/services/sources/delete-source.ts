import type { Catalog,CatalogSql } from '../../catalog/db';
import { recordAudit } from '../../catalog/audit';
import { removeSource } from './remove-source';

export async function deleteSource(db: Catalog, sql: CatalogSql, options: { actor: string; id: string }): Promise<void> {
  const removed = await removeSource(sql, { id: options.id });
  await recordAudit(db, { actor: options.actor, action: 'source.delete', target: removed.name, detail: { type: removed.type, path: removed.path } });
}
