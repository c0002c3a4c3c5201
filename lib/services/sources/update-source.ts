import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { SOURCE_COLUMNS, type SourceRow } from './list-sources';
import { checkSource } from './check-source';

/** Renames a source, points it at another folder (a datastore that moved) or changes its storage folders; its VMs and
 *  backups stay. */
export async function updateSource(sql: CatalogSql, options: { id: string; name: string; type: string; path: string; storage?: string[] }): Promise<SourceRow> {
  const { name, type, root, storage } = await checkSource(options);
  try {
    const { rows } = await sql.query<SourceRow>(
      // No storage given: the source keeps its storage folders.
      `UPDATE "Source" SET "name" = $2, "type" = $3, "path" = $4, "storage" = COALESCE($5::jsonb, "storage") WHERE "id" = $1 RETURNING ${SOURCE_COLUMNS}`,
      [options.id, name, type, root, options.storage === undefined ? null : JSON.stringify(storage)],
    );
    if (rows.length === 0) throw new AppError('NOT_FOUND', { message: 'no such source' });
    return rows[0];
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new AppError('CONFLICT', { message: `a source named '${name}' already exists` });
    throw err;
  }
}
