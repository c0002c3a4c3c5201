import fs from 'node:fs/promises';
import type { Catalog } from '../db';
import { sourceRoot } from '../engine/sources/inventory';
import { SOURCE_TYPES, type SourceSpec, type SourceType } from '../engine/sources/types';
import { AppError } from '../errors';

export type SourceRow = SourceSpec & { id: string; createdAt: Date };

/** Registers a source; its folder must exist. The path is stored canonical. */
export async function addSource(db: Catalog, options: { name: string; type: string; path: string }): Promise<SourceRow> {
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
  const existing = await db.source.findUnique({ where: { name } });
  if (existing) throw new AppError('CONFLICT', { message: `a source named '${name}' already exists (${existing.type}, ${existing.path})` });
  try {
    const row = await db.source.create({ data: { name, type: options.type, path: root } });
    return { ...row, type: row.type as SourceType };
  } catch (err) {
    if ((err as { code?: string }).code === 'P2002') throw new AppError('CONFLICT', { message: `a source named '${name}' already exists` });
    throw err;
  }
}

export async function listSources(db: Catalog): Promise<SourceRow[]> {
  const rows = await db.source.findMany({ orderBy: { name: 'asc' } });
  return rows.map((row) => ({ ...row, type: row.type as SourceType }));
}

/** The named source, or every source when no name is given. */
export async function selectSources(db: Catalog, name?: string): Promise<SourceRow[]> {
  const sources = await listSources(db);
  if (!name) return sources;
  const source = sources.find((s) => s.name === name);
  if (!source) throw new AppError('NOT_FOUND', { message: `no source named '${name}' (see 'vmdedup source list')` });
  return [source];
}
