import { describe, expect, it } from 'vitest';
import { formatTime, restoreActionWords } from './format';

describe('formatTime: the one format of times on screens and in messages', () => {
  it('is year first, 24 hours, with the zone named', () => {
    const at = new Date('2026-12-01T18:05:09Z');
    expect(formatTime(at, { timeZone: 'UTC' })).toBe('2026-12-01 18:05 UTC');
    expect(formatTime(at, { timeZone: 'UTC', seconds: true })).toBe('2026-12-01 18:05:09 UTC');
    expect(formatTime('2026-12-31T23:30:00Z', { timeZone: 'Europe/Berlin' })).toBe('2027-01-01 00:30 GMT+1');
    expect(formatTime(at, { timeZone: 'UTC', dateOnly: true })).toBe('2026-12-01');
    // Midnight is 00, not 24 (hourCycle h23).
    expect(formatTime('2026-06-01T00:00:00Z', { timeZone: 'UTC' })).toBe('2026-06-01 00:00 UTC');
  });

  it('restore actions read as words, unknown ones as they are', () => {
    expect(restoreActionWords('skipped-common')).toBe('kept as it is (common disk)');
    expect(restoreActionWords('something-new')).toBe('something-new');
  });
});
