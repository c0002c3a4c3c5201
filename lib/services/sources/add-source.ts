import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { type SourceRow, listSources } from './list-sources';
import { checkSource } from './check-source';

/** Registers a source; its folder must exist. The path is stored canonical. */
export async function addSource(sql: CatalogSql, options: { name: string; type: string; path: string }): Promise<SourceRow> {
  const { name, type, root } = await checkSource(options);
  const { rows } = await sql.query<SourceRow>(
    `INSERT INTO "Source" ("id", "name", "type", "path") VALUES (gen_random_uuid()::text, $1, $2, $3)
     ON CONFLICT ("name") DO NOTHING RETURNING "id", "name", "type", "path", "createdAt"`,
    [name, type, root],
  );
  if (rows.length === 0) {
    const existing = (await listSources(sql)).find((s) => s.name === name);
    throw new AppError('CONFLICT', { message: `a source named '${name}' already exists (${existing?.type}, ${existing?.path})` });
  }
  return rows[0];
}
