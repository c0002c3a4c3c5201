import type { Catalog } from '../../catalog/db';

export type VmListRow = {
  id: string; name: string; source: string; seenInLastScan: boolean;
  disks: number; commonDisks: number; sharesWith: string[];
  backups: number; lastBackupAt: string | null; logicalBytes: number;
  lastResult: 'ok' | 'failed' | null; lastError: string | null;
};

type JobOutcome = { backups?: { vm: string; source: string }[]; failures?: { vm: string; source: string; error: string }[] };

/** Every VM with what an administrator filters on: protected, shares disks, how its last backup went. */
export async function listVms(db: Catalog): Promise<VmListRow[]> {
  const [vms, jobs] = await Promise.all([
    db.vm.findMany({
      orderBy: [{ source: { name: 'asc' } }, { name: 'asc' }],
      include: {
        source: { select: { name: true, scannedAt: true } },
        disks: { include: { disk: { select: { common: true, vms: { select: { vm: { select: { name: true } } } } } } } },
        backups: { orderBy: { createdAt: 'desc' }, take: 1, select: { createdAt: true, logicalBytes: true } },
        _count: { select: { backups: true } },
      },
    }),
    db.job.findMany({ where: { kind: 'backup', state: { in: ['succeeded', 'partial', 'failed'] } }, orderBy: { finishedAt: 'desc' }, take: 200, select: { result: true, error: true } }),
  ]);
  // The latest finished job that mentions a VM says how its last backup went.
  const lastResult = new Map<string, { result: 'ok' | 'failed'; error: string | null }>();
  for (const job of jobs) {
    const outcome = (job.result ?? {}) as JobOutcome;
    for (const b of outcome.backups ?? []) if (!lastResult.has(`${b.source}/${b.vm}`)) lastResult.set(`${b.source}/${b.vm}`, { result: 'ok', error: null });
    for (const f of outcome.failures ?? []) if (!lastResult.has(`${f.source}/${f.vm}`)) lastResult.set(`${f.source}/${f.vm}`, { result: 'failed', error: f.error });
  }
  return vms.map((vm) => {
    const common = vm.disks.filter((link) => link.disk.common);
    const sharesWith = [...new Set(common.flatMap((link) => link.disk.vms.map((v) => v.vm.name)).filter((name) => name !== vm.name))].sort();
    const last = lastResult.get(`${vm.source.name}/${vm.name}`);
    return {
      id: vm.id, name: vm.name, source: vm.source.name,
      seenInLastScan: !vm.source.scannedAt || (vm.lastSeenAt !== null && vm.lastSeenAt >= vm.source.scannedAt),
      disks: vm.disks.length, commonDisks: common.length, sharesWith,
      backups: vm._count.backups, lastBackupAt: vm.backups[0]?.createdAt.toISOString() ?? null, logicalBytes: Number(vm.backups[0]?.logicalBytes ?? 0),
      lastResult: last?.result ?? (vm._count.backups > 0 ? 'ok' : null), lastError: last?.error ?? null,
    };
  });
}
