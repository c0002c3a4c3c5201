import fs from 'node:fs/promises';
import type { CatalogSql } from '../db';
import { isInside } from '../engine/containment';
import { sourceRoot } from '../engine/sources/inventory';
import { SOURCE_TYPES, type SourceSpec, type SourceType } from '../engine/sources/types';
import { AppError } from '../errors';

export type SourceRow = SourceSpec & { id: string; createdAt: Date };

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

async function checkSource(options: { name: string; type: string; path: string }): Promise<{ name: string; type: SourceType; root: string }> {
  const name = options.name.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new AppError('BAD_INPUT', { message: `source name '${options.name}' is invalid: use letters, digits, '.', '_' or '-' (at most 64)` });
  }
  if (!SOURCE_TYPES.includes(options.type as SourceType)) {
    throw new AppError('BAD_INPUT', { message: `source type '${options.type}' is invalid: use ${SOURCE_TYPES.join(' or ')}` });
  }
  const root = await sourceRoot(options.path);
  // A scan walks the whole folder: never the filesystem root or the kernel's pseudo-filesystems.
  if (root === '/' || ['/proc', '/sys', '/dev'].some((system) => isInside(system, root))) {
    throw new AppError('BAD_INPUT', { message: `${options.path}: a source cannot be ${root === '/' ? 'the root folder' : 'a system folder'} (${root}); name the folder that holds the VM configs` });
  }
  await fs.access(root, fs.constants.R_OK | fs.constants.X_OK).catch(() => {
    throw new AppError('BAD_INPUT', { message: `${options.path}: source folder cannot be read` });
  });
  return { name, type: options.type as SourceType, root };
}

export async function listSources(sql: CatalogSql): Promise<SourceRow[]> {
  const { rows } = await sql.query<SourceRow>('SELECT "id", "name", "type", "path", "createdAt" FROM "Source" ORDER BY "name"');
  return rows;
}

/** The named source, or every source when no name is given. */
export async function selectSources(sql: CatalogSql, name?: string): Promise<SourceRow[]> {
  const sources = await listSources(sql);
  if (!name) return sources;
  const source = sources.find((s) => s.name === name);
  if (!source) throw new AppError('NOT_FOUND', { message: `no source named '${name}' (see 'vmdedup source list')` });
  return [source];
}
