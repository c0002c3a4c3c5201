import { type CatalogSql, inTransaction } from '../../catalog/db';
import { CATALOG_INDEX_LOCK } from '../../catalog/locks';
import { AppError } from '../../errors';
import { type SourceRow } from './list-sources';

/** Removes a source that has no backups (one with backups keeps them findable: refuse, and say so). */
export async function removeSource(sql: CatalogSql, options: { id: string }): Promise<SourceRow> {
  // The index lock, exclusive: no backup records an image of this source between the count and the delete (which
  // would take that record with it while the repository keeps the image).
  return inTransaction(sql, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [CATALOG_INDEX_LOCK]);
    const { rows: [source] } = await client.query<SourceRow & { backups: string }>(
      `SELECT s."id", s."name", s."type", s."path", s."createdAt",
         (SELECT count(*) FROM "BackupImage" b JOIN "Vm" v ON v."id" = b."vmId" WHERE v."sourceId" = s."id") AS backups
       FROM "Source" s WHERE s."id" = $1`,
      [options.id],
    );
    if (!source) throw new AppError('NOT_FOUND', { message: 'no such source' });
    if (Number(source.backups) > 0) {
      throw new AppError('CONFLICT', { message: `source '${source.name}' has ${source.backups} backup images: it stays so they can be restored (point it at another folder instead)` });
    }
    await client.query('DELETE FROM "Source" WHERE "id" = $1', [options.id]);
    return source;
  });
}
