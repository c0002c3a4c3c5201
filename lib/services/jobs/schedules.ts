/**
 * Scheduled jobs' schedules: cron expressions (minute hour day-of-month month day-of-week, as crontab(5); `@daily` and
 * friends too) in an IANA time zone. The worker looks every SCHEDULER_TICK_MS: a job is due when the first fire of
 * its schedule after its last fire (`scheduledAt`) has come. Firing sets `scheduledAt` to now, so a run missed while
 * vmdedup was down fires once when it is back, never once per missed fire, and a fire claimed by one worker is not
 * claimed by another (the update is conditional on the value it read).
 */
import cronParser from 'cron-parser';
import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { isTimeZone } from '../../engine/gc/retention';
import { queueJob } from './queue-job';

export const SCHEDULER_TICK_MS = 30_000;

const LABELS = { backup: 'Backup job', gc: 'Garbage collection', verify: 'Verify job' } as const;

/** Why a schedule is not valid, or undefined. */
export function scheduleProblem(schedule: string, timeZone: string): string | undefined {
  if (!isTimeZone(timeZone)) return `unknown time zone '${timeZone}' (an IANA name such as Europe/Berlin, or UTC)`;
  try {
    cronParser.parseExpression(schedule, { tz: timeZone });
  } catch (err) {
    return `schedule '${schedule}' is not a cron expression (minute hour day month weekday, e.g. '0 2 * * *'): ${(err as Error).message}`;
  }
  if (schedule.trim().split(/\s+/).length === 6) return `schedule '${schedule}' has a seconds field: use five fields (minute hour day month weekday)`;
  return undefined;
}

/** The schedule's first fire strictly after `after`. */
export function nextFire(schedule: string, timeZone: string, after: Date): Date {
  return cronParser.parseExpression(schedule, { tz: timeZone, currentDate: after }).next().toDate();
}

/** Queues a run of every enabled scheduled job that is due at `now`; returns the names fired. */
export async function fireDueScheduledJobs(db: Catalog, queue: PgBoss, now = new Date()): Promise<string[]> {
  const jobs = await db.scheduledJob.findMany({ where: { enabled: true }, orderBy: { name: 'asc' } });
  const fired: string[] = [];
  for (const job of jobs) {
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
    const kind = job.kind as 'backup' | 'gc' | 'verify';
    const { job: run } = await queueJob(db, queue, {
      kind, target: { scheduledJob: job.name }, label: `${LABELS[kind]} ${job.name}`, actor: 'scheduler',
      audit: { action: `${kind}.scheduled`, target: job.name }, scheduledJobId: job.id,
    });
    await db.scheduledJob.update({ where: { id: job.id }, data: { lastRunJobId: run.id } });
    fired.push(job.name);
  }
  return fired;
}
