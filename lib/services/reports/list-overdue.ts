import type { Catalog, CatalogSql } from '../../catalog/db';
import { newestGoodBackups } from '../../catalog/rpo-watch';
import { MISSED_AFTER_MS, coverageOf, nextRunOf, vmsPastRpo } from '../jobs/coverage';

export type OverdueKind = 'rpo' | 'job-late' | 'job-failed' | 'verify-outdated' | 'unprotected';

/** One thing that needs attention now: what (a VM as `source/name`, or a job), and why in a few words. */
export type OverdueItem = {
  kind: OverdueKind; subject: string; reason: string;
  /** A VM's, for a link to its page. */
  vm?: { source: string; name: string };
  /** A time that goes with the reason (a last good backup, a fire that was due, a run's end). */
  at?: { label: string; iso: string };
};

const KIND_ORDER: OverdueKind[] = ['rpo', 'job-late', 'job-failed', 'verify-outdated', 'unprotected'];

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * What is overdue at `now`: VMs past a backup job's RPO (as the RPO watch sees them), enabled scheduled jobs no worker
 * has fired or whose last run failed, backups a verify job has not verified within its `verifyOutdatedAfterDays`, and
 * VMs a scan sees that have no backup and no backup job. A fixed number of queries (one more per verify job with an
 * outdated-after setting), whatever the fleet's size.
 */
export async function listOverdue(db: Catalog, options: { sql: CatalogSql; now?: Date }): Promise<OverdueItem[]> {
  const now = options.now ?? new Date();
  const jobs = await db.scheduledJob.findMany({ where: { enabled: true }, orderBy: { name: 'asc' } });
  const backupJobs = jobs.filter((job) => job.kind === 'backup');
  const verifyJobs = jobs.filter((job) => job.kind === 'verify' && job.verifyOutdatedAfterDays != null);
  const lastRunIds = jobs.flatMap((job) => (job.lastRunJobId ? [job.lastRunJobId] : []));
  const [newestGood, vms, lastRuns] = await Promise.all([
    backupJobs.some((job) => job.rpoHours != null) ? newestGoodBackups(options.sql) : [],
    db.vm.findMany({ select: { id: true, name: true, lastSeenAt: true, source: { select: { name: true } }, _count: { select: { backups: true } } } }),
    lastRunIds.length ? db.job.findMany({ where: { id: { in: lastRunIds } }, select: { id: true, state: true, error: true, message: true, finishedAt: true } }) : [],
  ]);
  const unverified = await Promise.all(verifyJobs.map((job) => db.backupImage.groupBy({
    by: ['vmId'], _count: { _all: true },
    where: {
      OR: [{ verifiedAt: null }, { verifiedAt: { lt: new Date(now.getTime() - job.verifyOutdatedAfterDays! * 86_400_000) } }],
      ...(job.source ? { vm: { source: { name: job.source } } } : {}),
    },
  })));

  const items: OverdueItem[] = [];

  // VMs past an RPO: one line per VM, naming every job whose RPO it is past.
  const pastRpo = new Map<string, { vm: (typeof newestGood)[number]; jobs: string[] }>();
  for (const job of backupJobs) {
    for (const vm of vmsPastRpo(job, newestGood, now)) {
      const entry = pastRpo.get(vm.vmId) ?? { vm, jobs: [] };
      entry.jobs.push(`${job.rpoHours} h of job ${job.name}`);
      pastRpo.set(vm.vmId, entry);
    }
  }
  for (const { vm, jobs: behind } of pastRpo.values()) {
    items.push({
      kind: 'rpo', subject: `${vm.source}/${vm.vm}`, vm: { source: vm.source, name: vm.vm },
      reason: `no good backup within the RPO (${behind.join('; ')})${vm.newestGood ? '' : ': none yet'}`,
      ...(vm.newestGood ? { at: { label: 'last good backup', iso: vm.newestGood.toISOString() } } : {}),
    });
  }

  const runs = new Map(lastRuns.map((run) => [run.id, run]));
  for (const job of jobs) {
    const due = nextRunOf(job);
    if (due && now.getTime() - due.getTime() > MISSED_AFTER_MS) {
      items.push({ kind: 'job-late', subject: `${job.kind} job ${job.name}`, reason: 'missed its run: no worker is firing scheduled jobs', at: { label: 'due', iso: due.toISOString() } });
    }
    const run = job.lastRunJobId ? runs.get(job.lastRunJobId) : undefined;
    if (run && (run.state === 'failed' || run.state === 'partial')) {
      const detail = run.state === 'failed' ? run.error ?? run.message : run.message || run.error;
      items.push({
        kind: 'job-failed', subject: `${job.kind} job ${job.name}`, reason: `last run ${run.state}${detail ? `: ${detail}` : ''}`,
        ...(run.finishedAt ? { at: { label: 'finished', iso: run.finishedAt.toISOString() } } : {}),
      });
    }
  }

  const vmById = new Map(vms.map((vm) => [vm.id, { source: vm.source.name, vm: vm.name }]));
  verifyJobs.forEach((job, i) => {
    const covers = coverageOf(job);
    const count = unverified[i].reduce((sum, row) => { const vm = vmById.get(row.vmId); return vm && covers(vm) ? sum + row._count._all : sum; }, 0);
    if (count > 0) items.push({ kind: 'verify-outdated', subject: `verify job ${job.name}`, reason: `${plural(count, 'backup')} not verified within ${job.verifyOutdatedAfterDays} days` });
  });

  const backupCoverage = backupJobs.map(coverageOf);
  for (const vm of vms) {
    if (vm.lastSeenAt === null || vm._count.backups > 0) continue;
    const named = { source: vm.source.name, vm: vm.name };
    if (backupCoverage.some((covers) => covers(named))) continue;
    items.push({ kind: 'unprotected', subject: `${named.source}/${named.vm}`, vm: { source: named.source, name: named.vm }, reason: 'unprotected, no schedule: no backup, and no backup job covers it' });
  }

  return items.sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.subject.localeCompare(b.subject));
}
