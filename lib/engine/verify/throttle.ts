/**
 * A read-rate cap: each read reserves its bytes and waits until the average since the start stays at or under the
 * cap. The wait ends when the run is stopped (a worker shut down, a job's time limit), however long it was to be;
 * and a wait longer than a timer can take (setTimeout fires at once past 2^31-1 ms) is made of shorter ones.
 */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

export function rateThrottle(maxBytesPerSecond: number | undefined, signal?: AbortSignal): (length: number) => Promise<void> {
  const started = Date.now();
  let reserved = 0;
  return async (length) => {
    if (!maxBytesPerSecond) return;
    reserved += length;
    const until = started + (reserved / maxBytesPerSecond) * 1000;
    for (let ahead = until - Date.now(); ahead > 0; ahead = until - Date.now()) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        const done = () => { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve(); };
        const timer = setTimeout(done, Math.min(ahead, LONGEST_TIMER_MS));
        signal?.addEventListener('abort', done, { once: true });
      });
    }
    signal?.throwIfAborted();
  };
}
