import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type Timed = { seconds: number; peakRssBytes: number; stdout: string };

/**
 * Runs a command under GNU time: wall seconds and peak RSS (KiB from %M). Dirty pages left by the previous
 * step are flushed first, so no tool pays for another's writeback.
 */
export async function timed(command: string, args: string[], env: Record<string, string> = {}): Promise<Timed> {
  await run('sync');
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%M', command, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => {
      const seconds = (performance.now() - started) / 1000;
      const lines = stderr.trim().split('\n');
      const peakKiB = Number(lines[lines.length - 1]);
      if (code !== 0) reject(new Error(`${command} ${args.join(' ')} failed (${code}): ${stderr.slice(-500)}`));
      else resolve({ seconds, peakRssBytes: peakKiB * 1024, stdout });
    });
  });
}

/** Short runs are noisy here: the median of several, for every tool alike (peak memory: the highest). */
export async function medianOf(runs: number, once: () => Promise<Timed>): Promise<Timed> {
  const results: Timed[] = [];
  for (let i = 0; i < runs; i++) results.push(await once());
  results.sort((a, b) => a.seconds - b.seconds);
  return { ...results[Math.floor(runs / 2)], peakRssBytes: Math.max(...results.map((r) => r.peakRssBytes)) };
}

export async function du(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-sb', dir]);
  return Number(stdout.split('\t')[0]);
}
