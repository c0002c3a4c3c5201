/**
 * Retention: which backups of one VM a policy keeps, and the rules that keep each. restic's semantics (`forget`):
 * every rule looks at all of the VM's backups on its own, newest first, and a backup is kept when any rule keeps it
 * (the newest backup usually counts for keep-last, keep-daily and keep-weekly at once).
 *
 * - keep-last N: the N newest backups.
 * - keep-hourly/daily/weekly/monthly/yearly N: the newest backup of each of the N newest hours (days, ISO weeks,
 *   months, years) that have a backup, in the policy's time zone. A period without a backup does not count: a VM
 *   backed up on 3 of the last 7 days, with keep-daily 7, keeps those 3 and the newest backups of the 4 days before.
 * - keep-within D: every backup taken within D of the VM's newest backup (not of now: a VM whose backups stopped
 *   keeps its last ones).
 * - A protected backup is always kept, and counts towards the rules like any other.
 *
 * A policy with no rule keeps everything: prune refuses it rather than read it as "keep nothing".
 */

export type RetentionPolicy = {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Milliseconds before the VM's newest backup. */
  withinMs?: number;
};

export type RetainedBackup = { id: string; createdAt: Date; protected?: boolean };
export type RetentionDecision = { kept: { id: string; reasons: string[] }[]; removed: string[] };

export const BUCKET_RULES = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
type BucketRule = (typeof BUCKET_RULES)[number];

export function hasRules(policy: RetentionPolicy): boolean {
  return BUCKET_RULES.some((rule) => (policy[rule] ?? 0) > 0) || (policy.withinMs ?? 0) > 0;
}

/** Decides for the backups of one VM (any order); `kept` and `removed` come newest first. */
export function applyRetention(backups: RetainedBackup[], policy: RetentionPolicy, timeZone: string): RetentionDecision {
  const newestFirst = [...backups].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
  const reasons = new Map<string, string[]>(newestFirst.map((backup) => [backup.id, []]));
  if (!hasRules(policy)) {
    for (const backup of newestFirst) reasons.get(backup.id)!.push('no retention rule');
  }
  const periods = new PeriodKeys(timeZone);
  for (const rule of BUCKET_RULES) {
    let left = policy[rule] ?? 0;
    let lastKey: string | undefined;
    for (const backup of newestFirst) {
      if (left <= 0) break;
      const key = rule === 'last' ? backup.id : periods.of(backup.createdAt, rule);
      if (key === lastKey) continue;
      lastKey = key;
      left--;
      reasons.get(backup.id)!.push(rule === 'last' ? 'last' : `${rule} ${key}`);
    }
  }
  if (policy.withinMs && newestFirst.length) {
    const since = newestFirst[0].createdAt.getTime() - policy.withinMs;
    for (const backup of newestFirst) if (backup.createdAt.getTime() >= since) reasons.get(backup.id)!.push('within');
  }
  for (const backup of newestFirst) if (backup.protected) reasons.get(backup.id)!.push('protected');
  const decision: RetentionDecision = { kept: [], removed: [] };
  for (const backup of newestFirst) {
    const why = reasons.get(backup.id)!;
    if (why.length) decision.kept.push({ id: backup.id, reasons: why });
    else decision.removed.push(backup.id);
  }
  return decision;
}

/** Calendar periods of an instant in a time zone: 2026-12-01T14 (hour), 2026-12-01, 2026-W49, 2026-12, 2026. */
export class PeriodKeys {
  private readonly format: Intl.DateTimeFormat;

  constructor(timeZone: string) {
    this.format = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23' });
  }

  of(at: Date, rule: Exclude<BucketRule, 'last'>): string {
    const parts = Object.fromEntries(this.format.formatToParts(at).map((part) => [part.type, part.value]));
    const { year, month, day, hour } = parts as Record<'year' | 'month' | 'day' | 'hour', string>;
    switch (rule) {
      case 'hourly': return `${year}-${month}-${day}T${hour}`;
      case 'daily': return `${year}-${month}-${day}`;
      case 'weekly': return isoWeek(Number(year), Number(month), Number(day));
      case 'monthly': return `${year}-${month}`;
      case 'yearly': return year;
    }
  }
}

/** The ISO 8601 week of a calendar date: weeks start on Monday, week 1 holds the year's first Thursday. */
export function isoWeek(year: number, month: number, day: number): string {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() || 7; // Monday 1 … Sunday 7
  date.setUTCDate(date.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const weekYear = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(weekYear, 0, 1)) / 86_400_000 + 1) / 7);
  return `${weekYear}-W${String(week).padStart(2, '0')}`;
}

/** Whether a time zone name is one this runtime knows (IANA, e.g. Europe/Berlin, or UTC). */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
