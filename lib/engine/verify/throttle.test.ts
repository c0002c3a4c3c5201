import { describe, expect, it } from 'vitest';
import { rateThrottle } from './throttle';

const settledWithin = (promise: Promise<unknown>, ms: number) =>
  Promise.race([promise.then(() => 'resolved', () => 'rejected'), new Promise((resolve) => setTimeout(() => resolve('pending'), ms))]);

describe('verify read-rate cap', () => {
  it('keeps waiting when the wait is longer than a timer takes (--max-rate 1: 3 MB is 35 days), instead of reading at once', async () => {
    const controller = new AbortController();
    const throttle = rateThrottle(1, controller.signal);
    const read = throttle(3_000_000);
    expect(await settledWithin(read, 200), 'past 2^31-1 ms setTimeout fires at once: the cap was not applied').toBe('pending');
    controller.abort();
    await expect(read).rejects.toThrow();
  });

  it('stops waiting when the run is stopped (a worker shut down, a time limit), not days later', async () => {
    const controller = new AbortController();
    const throttle = rateThrottle(1, controller.signal);
    const read = throttle(1_048_576); // 12 days at 1 byte/s
    setTimeout(() => controller.abort(), 50);
    expect(await settledWithin(read, 1000)).toBe('rejected');
  });

  it('paces reads to the cap', async () => {
    const throttle = rateThrottle(10_000);
    const start = Date.now();
    await throttle(1000);
    await throttle(1000);
    expect(Date.now() - start).toBeGreaterThanOrEqual(190);
    await rateThrottle(undefined)(1e12);
  });
});
