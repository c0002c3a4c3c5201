import type { CatalogSql } from '../../catalog/db';
import { type SourceSpec } from '../../engine/sources/types';

export type SourceRow = SourceSpec & { id: string; createdAt: Date; storage: string[]; uri?: string };

/** The columns a SourceRow is read from. */
export const SOURCE_COLUMNS = '"id", "name", "type", "path", "storage", "uri", "createdAt"';

export async function listSources(sql: CatalogSql): Promise<SourceRow[]> {
  const { rows } = await sql.query<SourceRow>(`SELECT ${SOURCE_COLUMNS} FROM "Source" ORDER BY "name"`);
  return rows;
}
