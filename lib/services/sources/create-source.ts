import type { Catalog,CatalogSql } from '../../catalog/db';
import type { TAddSource } from '../../validation/sources';
import { recordAudit } from '../../catalog/audit';
import { addSource } from './add-source';

export async function createSource(db: Catalog, sql: CatalogSql, options: { actor: string; source: TAddSource }): Promise<{ id: string; name: string }> {
  const created = await addSource(sql, options.source);
  await recordAudit(db, { actor: options.actor, action: 'source.create', target: created.name, detail: { type: created.type, path: created.path, storage: created.storage } });
  return { id: created.id, name: created.name };
}
