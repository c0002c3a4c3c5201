/** Cron schedules (five fields, or @daily and friends) in an IANA time zone: checking one, and its next fire. */
import cronParser from 'cron-parser';
import { isTimeZone } from '../../engine/gc/retention';

/** Why a schedule is not valid, or undefined. */
export function scheduleProblem(schedule: string, timeZone: string): string | undefined {
  if (!isTimeZone(timeZone)) return `unknown time zone '${timeZone}' (an IANA name such as Europe/Berlin, or UTC)`;
  try {
    cronParser.parseExpression(schedule, { tz: timeZone });
  } catch (err) {
    return `schedule '${schedule}' is not a cron expression (minute hour day month weekday, e.g. '0 2 * * *'): ${(err as Error).message}`;
  }
  const fields = schedule.trim().split(/\s+/);
  if (fields.length === 6) return `schedule '${schedule}' has a seconds field: use five fields (minute hour day month weekday)`;
  // Five fields, or a macro: cron-parser would read '0 2 * *' (a field forgotten) as some other schedule.
  if (!(fields.length === 5 || (fields.length === 1 && /^@(yearly|annually|monthly|weekly|daily|hourly)$/.test(fields[0])))) {
    return `schedule '${schedule}' must have five fields (minute hour day month weekday, e.g. '0 2 * * *') or be @hourly, @daily, @weekly, @monthly or @yearly`;
  }
  return undefined;
}

/** The schedule's first fire strictly after `after`. */
export function nextFire(schedule: string, timeZone: string, after: Date): Date {
  return cronParser.parseExpression(schedule, { tz: timeZone, currentDate: after }).next().toDate();
}
