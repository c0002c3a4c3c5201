/**
 * Scheduled jobs' schedules: cron expressions (minute hour day-of-month month day-of-week, as crontab(5); `@daily` and
 * friends too) in an IANA time zone. The worker looks every SCHEDULER_TICK_MS: a job is due when the first fire of
 * its schedule after its last fire (`scheduledAt`) has come. Firing sets `scheduledAt` to now, so a run missed while
 * vmdedup was down fires once when it is back, never once per missed fire, and a fire claimed by one worker is not
 * claimed by another (the update is conditional on the value it read).
 */
import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { queueScheduledRun } from './queue-scheduled-run';
import { type CatalogSql } from '../../catalog/db';
import { newestGoodBackups, syncRaised } from '../../catalog/rpo-watch';
import { MISSED_AFTER_MS, vmsPastRpo } from './coverage';
import { nextFire } from './cron';
import { sendAlert } from '../alerts/alerts';
import type { ScheduledJobRow } from './scheduled-jobs';

export const SCHEDULER_TICK_MS = 30_000;


/**
 * Queues a run of every enabled scheduled job that is due at `now`, and each retry that is due (a failed run's, see
 * retryAfter); returns the names fired. A fire of the schedule supersedes a retry not yet made.
 */
export async function fireDueScheduledJobs(db: Catalog, queue: PgBoss, now = new Date()): Promise<string[]> {
  const jobs = await db.scheduledJob.findMany({ where: { enabled: true }, orderBy: { name: 'asc' } });
  const fired: string[] = [];
  for (const job of jobs) {
    if (await fireDueRetry(db, queue, job, now)) {
      fired.push(job.name);
      continue;
    }
    if (job.scheduledAt > now) {
      // A last fire in the future: the clock ran ahead and was set back. From now on count from now, not from then
      // (which would skip every fire until the clock catches up).
      await db.scheduledJob.updateMany({ where: { id: job.id, scheduledAt: job.scheduledAt }, data: { scheduledAt: now } });
      continue;
    }
    let due: Date;
    try {
      due = nextFire(job.schedule, job.timeZone, job.scheduledAt);
    } catch {
      continue; // refused when it was saved; a runtime that no longer knows its zone skips it
    }
    if (due > now) continue;
    const claimed = await db.scheduledJob.updateMany({ where: { id: job.id, scheduledAt: job.scheduledAt }, data: { scheduledAt: now } });
    if (claimed.count === 0) continue; // another worker fired it
    // One run of a job at a time: a run still queued or running is returned instead of a second one.
    await queueScheduledRun(db, queue, job, { actor: 'scheduler', why: 'scheduled' });
    fired.push(job.name);
    if (now.getTime() - due.getTime() > MISSED_AFTER_MS) {
      await sendAlert(db, {
        event: 'job.missed', severity: 'warning', subject: `${job.name}: run of ${due.toISOString()} missed`,
        message: `Scheduled job ${job.name} should have run at ${due.toISOString()}, but no worker was running then; it runs now (once, however many fires were missed).`,
        details: { job: job.name, due: due.toISOString(), queued: now.toISOString() },
      }).catch(() => undefined);
    }
  }
  return fired;
}

/** Queues the retry of the job's last run when it is due; true when it did. Claimed by clearing retryAt (once). */
async function fireDueRetry(db: Catalog, queue: PgBoss, job: ScheduledJobRow, now: Date): Promise<boolean> {
  if (!job.lastRunJobId) return false;
  const last = await db.job.findUnique({ where: { id: job.lastRunJobId } });
  if (!last?.retryAt || last.retryAt > now) return false;
  const claimed = await db.job.updateMany({ where: { id: last.id, retryAt: last.retryAt }, data: { retryAt: null } });
  if (claimed.count === 0) return false;
  // The VMs the run left undone; else (it failed whole: its worker died, its catalog was away, a source could not be
  // read) those it was for: a retry of a retry stays a retry of those VMs, never the whole job.
  const onlyVms = (last.result as { retryVms?: { source: string; vm: string }[] } | null)?.retryVms
    ?? (last.target as { onlyVms?: { source: string; vm: string }[] } | null)?.onlyVms;
  await queueScheduledRun(db, queue, job, { actor: 'scheduler', why: 'retry', attempt: last.attempt + 1, retries: job.retries, onlyVms });
  return true;
}

/**
 * The RPO watch: for each enabled backup job with an RPO, the VMs it covers (by source and pattern, as a scan last saw
 * them) whose newest good backup (not found damaged by verify) is older than the RPO. Each is told once, in one alert
 * per job and tick, and told again only after it had a good backup in time and fell behind once more.
 */
export async function watchRpo(db: Catalog, sql: CatalogSql, now = new Date()): Promise<{ job: string; behind: string[] }[]> {
  const jobs = await db.scheduledJob.findMany({ where: { enabled: true, kind: 'backup', rpoHours: { not: null } }, orderBy: { name: 'asc' } });
  if (jobs.length === 0) return [];
  const vms = await newestGoodBackups(sql);
  const told: { job: string; behind: string[] }[] = [];
  for (const job of jobs) {
    const prefix = `rpo:${job.name}:`;
    const behind = vmsPastRpo(job, vms, now);
    const fresh = await syncRaised(sql, prefix, behind.map((v) => `${prefix}${v.source}/${v.vm}`));
    if (fresh.length === 0) continue;
    const names = fresh.map((key) => key.slice(prefix.length));
    await sendAlert(db, {
      event: 'rpo.exceeded', severity: 'error', subject: `${job.name}: ${names.length} VM${names.length === 1 ? '' : 's'} without a good backup for ${job.rpoHours} h`,
      message: `No good backup within the RPO of ${job.rpoHours} hours of job ${job.name}: ${names.slice(0, 20).join(', ')}${names.length > 20 ? `, and ${names.length - 20} more` : ''}.`,
      details: { job: job.name, rpoHours: job.rpoHours, vms: names },
    }).catch(() => undefined);
    told.push({ job: job.name, behind: names });
  }
  return told;
}
