import { getCatalog, getCatalogSql } from '../db';
import { type CatalogStats, type CommonDiskSummary, getStats, listCommonDisks } from './reports';
import { type SourceRow, listSources } from './sources';

export type OverviewData = { stats: CatalogStats; commonDisks: CommonDiskSummary[]; sources: SourceRow[] };

export async function loadOverview(): Promise<OverviewData> {
  const db = await getCatalog();
  const [stats, commonDisks, sources] = await Promise.all([getStats(db), listCommonDisks(db), listSources(await getCatalogSql())]);
  return { stats, commonDisks, sources };
}
