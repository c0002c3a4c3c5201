/** The catalog's side of prune: the images retention decides on, and forgetting the ones it removes. */
import type pg from 'pg';
import { type CatalogSql } from './db';
import { CATALOG_INDEX_LOCK } from './locks';
import { imageBlobOf } from '../engine/repository/image-pack';

export type RetainableImage = { id: string; createdAt: Date; protected: boolean; vmId: string; vm: string; source: string };

export async function listRetainableImages(sql: CatalogSql): Promise<RetainableImage[]> {
  const { rows } = await sql.query<RetainableImage>(
    `SELECT b."id", b."createdAt", b."protected", v."id" AS "vmId", v."name" AS "vm", s."name" AS "source"
       FROM "BackupImage" b JOIN "Vm" v ON v."id" = b."vmId" JOIN "Source" s ON s."id" = v."sourceId"
      ORDER BY b."id"`,
  );
  return rows;
}

/** The stored disks each image names (its disks and their parents), by image id. */
export async function digestsOfImages(sql: CatalogSql): Promise<Map<string, string[]>> {
  const { rows } = await sql.query<{ id: string; digests: string[] }>(
    'SELECT "backupImageId" AS "id", array_agg(DISTINCT "digest") AS "digests" FROM "DiskReference" GROUP BY "backupImageId"',
  );
  return new Map(rows.map((row) => [row.id, row.digests]));
}

/**
 * Forgets images in the catalog, then removes their manifests with `remove`, holding the catalog index lock
 * exclusive (session-level, on its own connection: it ends with the process) so that no reconcile records an image
 * again between the two. Killed between them, the manifests left are recorded again by the next reconcile: the
 * prune is undone in part, never a catalog naming an image the repository lost.
 */
export async function forgetImages(sql: CatalogSql, ids: string[], remove: (ids: string[]) => Promise<void>): Promise<void> {
  const client: pg.PoolClient = await sql.connect();
  let lost: Error | undefined;
  client.on('error', (err) => { lost ??= err; });
  try {
    await client.query('SELECT pg_advisory_lock($1)', [CATALOG_INDEX_LOCK]);
    await client.query('BEGIN');
    for (let start = 0; start < ids.length; start += 5000) {
      await client.query('DELETE FROM "BackupImage" WHERE "id" = ANY($1)', [ids.slice(start, start + 5000)]);
    }
    // Their blobs are looked at again by reconcile: killed before the manifests go, those left are recorded again.
    await client.query('DELETE FROM "RecordedImageBlob" WHERE "id" = ANY($1)', [[...new Set(ids.map(imageBlobOf))]]);
    // The disk sets no image names any longer (an unchanged VM's images share one). Recorders hold the index lock
    // shared from before they insert a set until their images naming it commit, so none is reusing one swept here.
    await client.query('DELETE FROM "DiskSet" s WHERE NOT EXISTS (SELECT 1 FROM "BackupImage" b WHERE b."diskSetId" = s."id")');
    await client.query('COMMIT');
    await remove(ids);
    await client.query('SELECT pg_advisory_unlock($1)', [CATALOG_INDEX_LOCK]);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release(lost ?? true); // destroyed: the session lock ends with it, whatever happened
  }
}

/** Protects or unprotects a backup image; false when no image has that id. */
export async function setImageProtected(sql: CatalogSql, id: string, value: boolean): Promise<boolean> {
  const { rowCount } = await sql.query('UPDATE "BackupImage" SET "protected" = $2 WHERE "id" = $1', [id, value]);
  return (rowCount ?? 0) > 0;
}

export async function sourceExists(sql: CatalogSql, name: string): Promise<boolean> {
  const { rows } = await sql.query('SELECT 1 FROM "Source" WHERE "name" = $1', [name]);
  return rows.length > 0;
}
