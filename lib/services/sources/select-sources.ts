import type { CatalogSql } from '../../catalog/db';
import { AppError } from '../../errors';
import { type SourceRow, listSources } from './list-sources';

/** The named source, or every source when no name is given. */
export async function selectSources(sql: CatalogSql, name?: string): Promise<SourceRow[]> {
  const sources = await listSources(sql);
  if (!name) return sources;
  const source = sources.find((s) => s.name === name);
  if (!source) throw new AppError('NOT_FOUND', { message: `no source named '${name}' (see 'vmdedup source list')` });
  return [source];
}
