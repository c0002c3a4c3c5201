import type { CatalogSql } from '../../catalog/db';
import { type SourceSpec } from '../../engine/sources/types';

export type SourceRow = SourceSpec & { id: string; createdAt: Date };

export async function listSources(sql: CatalogSql): Promise<SourceRow[]> {
  const { rows } = await sql.query<SourceRow>('SELECT "id", "name", "type", "path", "createdAt" FROM "Source" ORDER BY "name"');
  return rows;
}
