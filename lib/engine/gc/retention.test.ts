import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../../test/helpers';
import { type RetainedBackup, type RetentionPolicy, BUCKET_RULES, PeriodKeys, applyRetention, isoWeek } from './retention';

const at = (iso: string) => new Date(iso);
const backup = (id: string, iso: string, isProtected = false): RetainedBackup => ({ id, createdAt: at(iso), protected: isProtected });

/** A second, independent reading of the rules: per rule, the newest backup of each period, the N newest periods. */
function oracle(backups: RetainedBackup[], policy: RetentionPolicy, timeZone: string): Set<string> {
  const keep = new Set<string>();
  const periods = new PeriodKeys(timeZone);
  const newestFirst = [...backups].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1));
  for (const rule of BUCKET_RULES) {
    const newestOf = new Map<string, RetainedBackup>();
    for (const b of newestFirst) {
      const key = rule === 'last' ? b.id : periods.of(b.createdAt, rule);
      if (!newestOf.has(key)) newestOf.set(key, b);
    }
    [...newestOf.values()].slice(0, policy[rule] ?? 0).forEach((b) => keep.add(b.id));
  }
  if (policy.withinMs && newestFirst.length) {
    for (const b of newestFirst) if (newestFirst[0].createdAt.getTime() - b.createdAt.getTime() <= policy.withinMs) keep.add(b.id);
  }
  for (const b of backups) if (b.protected) keep.add(b.id);
  return keep;
}

describe('retention', () => {
  it('keeps the newest backup of each of the newest N days that have one; a day without a backup does not count', () => {
    const backups = [
      backup('a', '2026-11-01T09:00:00Z'), backup('b', '2026-11-01T18:00:00Z'),
      backup('c', '2026-11-03T10:00:00Z'),
      backup('d', '2026-11-07T08:00:00Z'), backup('e', '2026-11-07T20:00:00Z'),
    ];
    const decision = applyRetention(backups, { daily: 2 }, 'UTC');
    expect(decision.kept).toEqual([{ id: 'e', reasons: ['daily 2026-11-07'] }, { id: 'c', reasons: ['daily 2026-11-03'] }]);
    expect(decision.removed).toEqual(['d', 'b', 'a']);
  });

  it('lets one backup count for several rules, and names each rule that kept it', () => {
    const backups = [backup('old', '2026-10-15T12:00:00Z'), backup('mid', '2026-11-20T12:00:00Z'), backup('new', '2026-11-30T12:00:00Z')];
    const decision = applyRetention(backups, { last: 1, weekly: 2, monthly: 3 }, 'UTC');
    expect(decision.kept).toEqual([
      { id: 'new', reasons: ['last', 'weekly 2026-W49', 'monthly 2026-11'] },
      { id: 'mid', reasons: ['weekly 2026-W47'] },
      { id: 'old', reasons: ['monthly 2026-10'] },
    ]);
    expect(decision.removed).toEqual([]);
  });

  it('keeps what is within the duration of the newest backup, not of now, and always keeps protected backups', () => {
    const backups = [backup('p', '2025-01-01T00:00:00Z', true), backup('x', '2025-06-01T00:00:00Z'), backup('y', '2025-06-30T00:00:00Z'), backup('z', '2025-07-01T00:00:00Z')];
    const decision = applyRetention(backups, { withinMs: 2 * 86_400_000 }, 'UTC');
    expect(decision.kept.map((k) => [k.id, k.reasons])).toEqual([['z', ['within']], ['y', ['within']], ['p', ['protected']]]);
    expect(decision.removed).toEqual(['x']);
  });

  it('reads days in the policy\'s time zone', () => {
    // 23:30 UTC on Nov 30 is Dec 1 in Berlin: two backups on the same Berlin day, two different UTC days.
    const backups = [backup('a', '2026-11-30T23:30:00Z'), backup('b', '2026-12-01T10:00:00Z')];
    expect(applyRetention(backups, { daily: 5 }, 'UTC').kept.map((k) => k.id)).toEqual(['b', 'a']);
    expect(applyRetention(backups, { daily: 5 }, 'Europe/Berlin').kept.map((k) => k.id)).toEqual(['b']);
  });

  it('numbers ISO weeks across year ends', () => {
    expect(isoWeek(2026, 12, 31)).toBe('2026-W53');
    expect(isoWeek(2027, 1, 3)).toBe('2026-W53');
    expect(isoWeek(2027, 1, 4)).toBe('2027-W01');
    expect(isoWeek(2024, 12, 30)).toBe('2025-W01');
    expect(isoWeek(2026, 12, 1)).toBe('2026-W49');
  });

  it('agrees with an independent reading of the rules on seeded random histories (90 days, several time zones)', () => {
    const random = seededRandom(20261201);
    const zones = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe'];
    for (let round = 0; round < 300; round++) {
      const start = Date.UTC(2026, 0, 1) + Math.floor(random() * 300) * 86_400_000;
      const count = Math.floor(random() * 60);
      const backups: RetainedBackup[] = Array.from({ length: count }, (_, i) => ({
        id: `b${String(i).padStart(3, '0')}`,
        createdAt: new Date(start + Math.floor(random() * 90 * 86_400_000)),
        protected: random() < 0.05,
      }));
      const pick = () => (random() < 0.5 ? undefined : Math.floor(random() * 8));
      const policy: RetentionPolicy = {
        last: pick(), hourly: pick(), daily: pick(), weekly: pick(), monthly: pick(), yearly: pick(),
        withinMs: random() < 0.3 ? Math.floor(random() * 20 * 86_400_000) : undefined,
      };
      const zone = zones[round % zones.length];
      const decision = applyRetention(backups, policy, zone);
      const kept = new Set(decision.kept.map((k) => k.id));
      const anyRule = Object.values(policy).some((v) => (v ?? 0) > 0);
      expect(kept, `round ${round}`).toEqual(anyRule ? oracle(backups, policy, zone) : new Set(backups.map((b) => b.id)));
      expect(decision.kept.length + decision.removed.length).toBe(count);
      // keep-last N alone keeps exactly the N newest
      if (policy.last !== undefined) {
        const lastOnly = applyRetention(backups, { last: policy.last }, zone);
        expect(lastOnly.kept.filter((k) => k.reasons.includes('last')).length).toBe(Math.min(policy.last, count));
      }
    }
  });
});
