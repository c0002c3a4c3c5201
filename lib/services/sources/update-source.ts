import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { SOURCE_COLUMNS, type SourceRow } from './list-sources';
import { checkSource } from './check-source';

/** Renames a source, points it at another folder (a datastore that moved) or changes its storage folders; its VMs and
 *  backups stay. */
export async function updateSource(sql: CatalogSql, options: { id: string; name: string; type: string; path: string; storage?: string[]; uri?: string | null }): Promise<SourceRow> {
  const { name, type, root, storage, uri } = await checkSource(options);
  try {
    const { rows } = await sql.query<SourceRow>(
      // No storage given: the source keeps its storage folders.
      `UPDATE "Source" SET "name" = $2, "type" = $3, "path" = $4, "storage" = COALESCE($5::jsonb, "storage"), "uri" = CASE WHEN $7 THEN $6 ELSE "uri" END WHERE "id" = $1 RETURNING ${SOURCE_COLUMNS}`,
      // No uri given (the dashboard's edit form): a libvirt connection stays one.
      [options.id, name, type, root, options.storage === undefined ? null : JSON.stringify(storage), uri, options.uri !== undefined],
    );
    if (rows.length === 0) throw new AppError('NOT_FOUND', { message: 'no such source' });
    return rows[0];
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new AppError('CONFLICT', { message: `a source named '${name}' already exists` });
    throw err;
  }
}
