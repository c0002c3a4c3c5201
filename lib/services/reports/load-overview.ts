import { getCatalog, getCatalogSql } from '../../catalog/db';
import { type CatalogStats, getStats } from './get-stats';
import { type CommonDiskSummary, listCommonDisks } from './list-common-disks';
import { type JobView } from '../jobs/job-view';
import { listJobs } from '../jobs/list-jobs';
import { type SourceRow, listSources } from '../sources/list-sources';
import { type StoragePoint, storageHistory } from './storage-history';
import { type OverdueItem, listOverdue } from './list-overdue';
import { type BackupRunSummary, recentBackupRuns } from './recent-runs';

export type OverviewData = { stats: CatalogStats; commonDisks: CommonDiskSummary[]; sources: SourceRow[]; history: StoragePoint[]; recentJobs: JobView[]; overdue: OverdueItem[];
  /** The last backup runs, whatever ran them (the start-up backup and the CLI's are no jobs). */
  recentRuns: BackupRunSummary[] };

export async function loadOverview(): Promise<OverviewData> {
  const db = await getCatalog();
  const sql = await getCatalogSql();
  const [stats, commonDisks, sources, history, recentJobs, overdue, recentRuns] = await Promise.all([
    getStats(sql), listCommonDisks(db), listSources(sql), storageHistory(sql), listJobs(db, { limit: 5 }), listOverdue(db, { sql }), recentBackupRuns(sql),
  ]);
  return { stats, commonDisks, sources, history, recentJobs, overdue, recentRuns };
}
