import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { SOURCE_COLUMNS, type SourceRow } from './list-sources';
import { checkSource } from './check-source';

/** Renames a source, points it at another folder (a datastore that moved) or changes its storage folders; its VMs and
 *  backups stay. */
export async function updateSource(sql: CatalogSql, options: { id: string; name: string; type: string; path: string; storage?: string[]; uri?: string | null }): Promise<SourceRow> {
  const { name, type, root, storage, uri } = await checkSource(options);
  const client = await sql.connect();
  try {
    await client.query('BEGIN');
    const { rows: [before] } = await client.query<{ name: string }>('SELECT "name" FROM "Source" WHERE "id" = $1 FOR UPDATE', [options.id]);
    const { rows } = await client.query<SourceRow>(
      // No storage given: the source keeps its storage folders.
      `UPDATE "Source" SET "name" = $2, "type" = $3, "path" = $4, "storage" = COALESCE($5::jsonb, "storage"), "uri" = CASE WHEN $7 THEN $6 ELSE "uri" END WHERE "id" = $1 RETURNING ${SOURCE_COLUMNS}`,
      // No uri given (the dashboard's edit form): a libvirt connection stays one.
      [options.id, name, type, root, options.storage === undefined ? null : JSON.stringify(storage), uri, options.uri !== undefined],
    );
    if (rows.length === 0) throw new AppError('NOT_FOUND', { message: 'no such source' });
    if (before && before.name !== name) {
      // What names the source goes with it: scheduled jobs would wait in a lane no worker serves (or fail), and a
      // pending restore would be routed to a source of that name no more. Queued jobs are failed by the workers' sweep.
      await client.query('UPDATE "ScheduledJob" SET "source" = $2 WHERE "source" = $1', [before.name, name]);
      await client.query('UPDATE "RestoreRequest" SET "source" = $2 WHERE "source" = $1', [before.name, name]);
    }
    await client.query('COMMIT');
    return rows[0];
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if ((err as { code?: string }).code === '23505') throw new AppError('CONFLICT', { message: `a source named '${name}' already exists` });
    throw err;
  } finally {
    client.release();
  }
}
