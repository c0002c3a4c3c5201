import { getCatalog, getCatalogSql } from '../db';
import { type CatalogStats, type CommonDiskSummary, getStats, listCommonDisks } from './reports';
import { type JobView, listJobs } from './jobs';
import { type SourceRow, listSources } from './sources';
import { type StoragePoint, storageHistory } from './storage-history';

export type OverviewData = { stats: CatalogStats; commonDisks: CommonDiskSummary[]; sources: SourceRow[]; history: StoragePoint[]; recentJobs: JobView[] };

export async function loadOverview(): Promise<OverviewData> {
  const db = await getCatalog();
  const sql = await getCatalogSql();
  const [stats, commonDisks, sources, history, recentJobs] = await Promise.all([
    getStats(sql), listCommonDisks(db), listSources(sql), storageHistory(sql), listJobs(db, { limit: 5 }),
  ]);
  return { stats, commonDisks, sources, history, recentJobs };
}
