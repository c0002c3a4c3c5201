import fs from 'node:fs/promises';
import type { CatalogSql } from '../db';
import { sourceRoot } from '../engine/sources/inventory';
import { SOURCE_TYPES, type SourceSpec, type SourceType } from '../engine/sources/types';
import { AppError } from '../errors';

export type SourceRow = SourceSpec & { id: string; createdAt: Date };

/** Registers a source; its folder must exist. The path is stored canonical. */
export async function addSource(sql: CatalogSql, options: { name: string; type: string; path: string }): Promise<SourceRow> {
  const name = options.name.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new AppError('BAD_INPUT', { message: `source name '${options.name}' is invalid: use letters, digits, '.', '_' or '-' (at most 64)` });
  }
  if (!SOURCE_TYPES.includes(options.type as SourceType)) {
    throw new AppError('BAD_INPUT', { message: `source type '${options.type}' is invalid: use ${SOURCE_TYPES.join(' or ')}` });
  }
  const root = await sourceRoot(options.path);
  await fs.access(root, fs.constants.R_OK | fs.constants.X_OK).catch(() => {
    throw new AppError('BAD_INPUT', { message: `${options.path}: source folder cannot be read` });
  });
  const { rows } = await sql.query<SourceRow>(
    `INSERT INTO "Source" ("id", "name", "type", "path") VALUES (gen_random_uuid()::text, $1, $2, $3)
     ON CONFLICT ("name") DO NOTHING RETURNING "id", "name", "type", "path", "createdAt"`,
    [name, options.type, root],
  );
  if (rows.length === 0) {
    const existing = (await listSources(sql)).find((s) => s.name === name);
    throw new AppError('CONFLICT', { message: `a source named '${name}' already exists (${existing?.type}, ${existing?.path})` });
  }
  return rows[0];
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
