import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { SOURCE_COLUMNS, type SourceRow, listSources } from './list-sources';
import { checkSource } from './check-source';

/** Registers a source; its folders must exist. Paths are stored canonical. */
export async function addSource(sql: CatalogSql, options: { name: string; type: string; path?: string; storage?: string[]; uri?: string }): Promise<SourceRow> {
  const { name, type, root, storage, uri } = await checkSource(options);
  const { rows } = await sql.query<SourceRow>(
    `INSERT INTO "Source" ("id", "name", "type", "path", "storage", "uri") VALUES (gen_random_uuid()::text, $1, $2, $3, $4::jsonb, $5)
     ON CONFLICT ("name") DO NOTHING RETURNING ${SOURCE_COLUMNS}`,
    [name, type, root, JSON.stringify(storage), uri],
  );
  if (rows.length === 0) {
    const existing = (await listSources(sql)).find((s) => s.name === name);
    throw new AppError('CONFLICT', { message: `a source named '${name}' already exists (${existing?.type}, ${existing?.path})` });
  }
  return rows[0];
}
