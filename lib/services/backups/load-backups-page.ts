import type { Catalog } from '../../catalog/db';
import { type JobView } from '../jobs/job-view';
import { listJobs } from '../jobs/list-jobs';
import { type BackupSummary, listBackups } from '../reports/list-backups';

export type BackupTargets = { source: string; vms: string[] }[];
export type BackupsPageData = { targets: BackupTargets; jobs: JobView[]; backups: BackupSummary[] };

/** What can be backed up (sources and their VMs), the job history and the latest backup images. */
export async function loadBackupsPage(db: Catalog): Promise<BackupsPageData> {
  const [sources, jobs, backups] = await Promise.all([
    db.source.findMany({ orderBy: { name: 'asc' }, include: { vms: { orderBy: { name: 'asc' }, select: { name: true } } } }),
    listJobs(db),
    listBackups(db, { limit: 100 }),
  ]);
  return { targets: sources.map((s) => ({ source: s.name, vms: s.vms.map((vm) => vm.name) })), jobs, backups };
}
