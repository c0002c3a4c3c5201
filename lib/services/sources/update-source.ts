import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { type SourceRow } from './list-sources';
import { checkSource } from './check-source';

/** Renames a source or points it at another folder (a datastore that moved); its VMs and backups stay. */
export async function updateSource(sql: CatalogSql, options: { id: string; name: string; type: string; path: string }): Promise<SourceRow> {
  const { name, type, root } = await checkSource(options);
  try {
    const { rows } = await sql.query<SourceRow>(
      'UPDATE "Source" SET "name" = $2, "type" = $3, "path" = $4 WHERE "id" = $1 RETURNING "id", "name", "type", "path", "createdAt"',
      [options.id, name, type, root],
    );
    if (rows.length === 0) throw new AppError('NOT_FOUND', { message: 'no such source' });
    return rows[0];
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new AppError('CONFLICT', { message: `a source named '${name}' already exists` });
    throw err;
  }
}
