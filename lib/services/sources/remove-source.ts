import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { type SourceRow } from './list-sources';

/** Removes a source that has no backups (one with backups keeps them findable: refuse, and say so). */
export async function removeSource(sql: CatalogSql, options: { id: string }): Promise<SourceRow> {
  const { rows: [source] } = await sql.query<SourceRow & { backups: string }>(
    `SELECT s."id", s."name", s."type", s."path", s."createdAt",
       (SELECT count(*) FROM "BackupImage" b JOIN "Vm" v ON v."id" = b."vmId" WHERE v."sourceId" = s."id") AS backups
     FROM "Source" s WHERE s."id" = $1`,
    [options.id],
  );
  if (!source) throw new AppError('NOT_FOUND', { message: 'no such source' });
  if (Number(source.backups) > 0) {
    throw new AppError('CONFLICT', { message: `source '${source.name}' has ${source.backups} backup images: it stays so they can be restored (point it at another folder instead)` });
  }
  await sql.query('DELETE FROM "Source" WHERE "id" = $1', [options.id]);
  return source;
}
