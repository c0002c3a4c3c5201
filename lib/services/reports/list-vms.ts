import type { Catalog, CatalogSql } from '../../catalog/db';
import { newestGoodBackups } from '../../catalog/rpo-watch';
import { coverageOf, nextRunOf, vmsPastRpo } from '../jobs/coverage';

export type VmListRow = {
  id: string; name: string; source: string; seenInLastScan: boolean;
  disks: number; commonDisks: number; sharesWith: string[];
  backups: number; lastBackupAt: string | null; logicalBytes: number;
  lastResult: 'ok' | 'failed' | null; lastError: string | null;
  /** The newest backup that verify did not find damaged. */
  lastGoodBackupAt: string | null;
  /** The newest backup's last verify (null: no backups); `failedVerifies` counts every backup of the VM found damaged. */
  verify: { state: 'ok' | 'failed' | 'unverified'; at: string | null; problems: string[] } | null;
  /** The newest backup's last restore drill (null: never drilled). */
  drill: { state: 'ok' | 'failed'; at: string; problems: string[] } | null;
  failedVerifies: number;
  /** The earliest next fire of the enabled backup jobs that cover the VM (null: none covers it); overdue when past. */
  nextRun: { at: string | null; job: string; overdue: boolean } | null;
  /** The backup jobs whose RPO the VM is past (no good backup within it). */
  pastRpo: { job: string; rpoHours: number }[];
};

type JobOutcome = { backups?: { vm: string; source: string }[]; failures?: { vm: string; source: string; error: string }[] };

/**
 * Every VM with what an administrator filters on: protected, shares disks, how its last backup went, its last good
 * backup and verify state, its next scheduled run and whether it is overdue. A fixed number of queries for any fleet.
 */
export async function listVms(db: Catalog, options: { sql: CatalogSql; now?: Date }): Promise<VmListRow[]> {
  const now = options.now ?? new Date();
  const [vms, jobs, newestGood, failedVerifies, scheduled] = await Promise.all([
    db.vm.findMany({
      orderBy: [{ source: { name: 'asc' } }, { name: 'asc' }],
      include: {
        source: { select: { name: true, scannedAt: true } },
        disks: { include: { disk: { select: { common: true, vms: { select: { vm: { select: { name: true } } } } } } } },
        backups: { orderBy: { createdAt: 'desc' }, take: 1, select: { createdAt: true, logicalBytes: true, verifiedAt: true, verifyStatus: true, verifyProblems: true, drilledAt: true, drillStatus: true, drillProblems: true } },
        _count: { select: { backups: true } },
      },
    }),
    db.job.findMany({ where: { kind: 'backup', state: { in: ['succeeded', 'partial', 'failed'] } }, orderBy: { finishedAt: 'desc' }, take: 200, select: { result: true, error: true } }),
    newestGoodBackups(options.sql, { unseenToo: true }),
    db.backupImage.groupBy({ by: ['vmId'], where: { verifyStatus: 'failed' }, _count: { _all: true } }),
    db.scheduledJob.findMany({ where: { enabled: true, kind: 'backup' }, orderBy: { name: 'asc' } }),
  ]);
  const goodAt = new Map(newestGood.map((row) => [row.vmId, row.newestGood]));
  const failedCount = new Map(failedVerifies.map((row) => [row.vmId, row._count._all]));
  const backupJobs = scheduled.map((job) => ({ job, covers: coverageOf(job), next: nextRunOf(job) }));
  const covered = vms.map((vm) => ({ vmId: vm.id, source: vm.source.name, vm: vm.name, newestGood: goodAt.get(vm.id) ?? null }));
  // As the RPO watch: only VMs a scan has seen (one known from backups alone is not expected to be backed up).
  const seen = covered.filter((_, i) => vms[i].lastSeenAt !== null);
  const pastRpo = new Map<string, VmListRow['pastRpo']>();
  for (const job of scheduled) {
    for (const v of vmsPastRpo(job, seen, now)) pastRpo.set(v.vmId, [...pastRpo.get(v.vmId) ?? [], { job: job.name, rpoHours: job.rpoHours! }]);
  }
  // The latest finished job that mentions a VM says how its last backup went.
  const lastResult = new Map<string, { result: 'ok' | 'failed'; error: string | null }>();
  for (const job of jobs) {
    const outcome = (job.result ?? {}) as JobOutcome;
    for (const b of outcome.backups ?? []) if (!lastResult.has(`${b.source}/${b.vm}`)) lastResult.set(`${b.source}/${b.vm}`, { result: 'ok', error: null });
    for (const f of outcome.failures ?? []) if (!lastResult.has(`${f.source}/${f.vm}`)) lastResult.set(`${f.source}/${f.vm}`, { result: 'failed', error: f.error });
  }
  return vms.map((vm, i) => {
    const common = vm.disks.filter((link) => link.disk.common);
    const sharesWith = [...new Set(common.flatMap((link) => link.disk.vms.map((v) => v.vm.name)).filter((name) => name !== vm.name))].sort();
    const last = lastResult.get(`${vm.source.name}/${vm.name}`);
    let nextRun: VmListRow['nextRun'] = null;
    for (const { job, covers, next } of backupJobs) {
      if (!covers(covered[i])) continue;
      const at = next?.toISOString() ?? null;
      // The earliest fire wins; a job without one (a zone this runtime lacks) only when no other covers the VM.
      if (!nextRun || (at && (!nextRun.at || at < nextRun.at))) nextRun = { at, job: job.name, overdue: next !== null && next < now };
    }
    const newest = vm.backups[0];
    return {
      id: vm.id, name: vm.name, source: vm.source.name,
      seenInLastScan: !vm.source.scannedAt || (vm.lastSeenAt !== null && vm.lastSeenAt >= vm.source.scannedAt),
      disks: vm.disks.length, commonDisks: common.length, sharesWith,
      backups: vm._count.backups, lastBackupAt: vm.backups[0]?.createdAt.toISOString() ?? null, logicalBytes: Number(vm.backups[0]?.logicalBytes ?? 0),
      lastResult: last?.result ?? (vm._count.backups > 0 ? 'ok' : null), lastError: last?.error ?? null,
      lastGoodBackupAt: covered[i].newestGood?.toISOString() ?? null,
      verify: newest ? {
        state: newest.verifyStatus === 'failed' ? 'failed' : newest.verifyStatus === 'ok' ? 'ok' : 'unverified',
        at: newest.verifiedAt?.toISOString() ?? null, problems: (newest.verifyProblems ?? []) as string[],
      } : null,
      drill: newest?.drilledAt ? { state: newest.drillStatus === 'ok' ? 'ok' : 'failed', at: newest.drilledAt.toISOString(), problems: (newest.drillProblems ?? []) as string[] } : null,
      failedVerifies: failedCount.get(vm.id) ?? 0,
      nextRun, pastRpo: pastRpo.get(vm.id) ?? [],
    };
  });
}
