/**
 * Which scheduled jobs cover a VM, when a job fires next, and which VMs are past a backup job's RPO: what the
 * scheduler's RPO watch, the VMs page and the Overview all mean by these words. Pure (no database, no engine run code),
 * so the web pages may import it.
 */
import { globMatcher } from '../../glob';
import { nextFire } from './cron';

/** A fire this long past and still not run was missed (no worker fired it): the scheduler alerts, the Overview lists it. */
export const MISSED_AFTER_MS = 5 * 60_000;

/** A VM as coverage sees it: its name in its source (VM names are unique per source only). */
export type CoveredVm = { source: string; vm: string };

type JobScope = { source: string | null; vmPatterns: unknown };

/**
 * The predicate "the job covers this VM": the job names no source or the VM's, and has no patterns or one matching
 * the VM's name. Build it once per job and call it per VM (the globs compile once).
 */
export function coverageOf(job: JobScope): (vm: CoveredVm) => boolean {
  const matchers = ((job.vmPatterns ?? []) as string[]).map(globMatcher);
  return (vm) => (!job.source || vm.source === job.source) && (matchers.length === 0 || matchers.some((m) => m(vm.vm)));
}

/** The job's next fire: the first fire of its schedule after its last one; null when its zone is unknown here. */
export function nextRunOf(job: { schedule: string; timeZone: string; scheduledAt: Date }): Date | null {
  try {
    return nextFire(job.schedule, job.timeZone, job.scheduledAt);
  } catch {
    return null; // refused when it was saved; a runtime that no longer knows its zone has no next run
  }
}

/** The VMs the backup job covers whose newest good backup (none, or older than the job's RPO) is behind at `now`. */
export function vmsPastRpo<T extends CoveredVm & { newestGood: Date | null }>(job: JobScope & { rpoHours: number | null }, vms: T[], now: Date): T[] {
  if (job.rpoHours == null) return [];
  const covers = coverageOf(job);
  const since = now.getTime() - job.rpoHours * 3_600_000;
  return vms.filter((v) => covers(v) && (!v.newestGood || v.newestGood.getTime() < since));
}
