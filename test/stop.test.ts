/** `vmdedup stop`: stops the `npm start` of its VMDEDUP_HOME (found by its pid file), never another program. */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { processStartTicks, startPidFile } from '../lib/home';
import { processAlive } from '../lib/engine/process-alive';
import { cli, createTestDatabase, tempDir } from './helpers';

describe('vmdedup stop', () => {
  it('stops the running start of this home, says so when none runs, and leaves a reused pid alone', async () => {
    const home = await tempDir();
    const env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'stop')).stdout).toMatch(/vmdedup is not running on .* \(no 'npm start' of this home\)/);

    // A stand-in for `npm start` (recorded as start does: pid and start time; it ends on SIGTERM).
    // Two of them: several starts may serve one home (on other ports); stop ends them all.
    const starts = [0, 1].map(() => spawn(process.execPath, ['-e', "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1000)", 'bin/start.mjs']));
    await fs.mkdir(path.dirname(startPidFile(home)), { recursive: true });
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const running of starts) await fs.writeFile(startPidFile(home, running.pid), `${running.pid} ${processStartTicks(running.pid!)}\n`);
    const stopped = await cli(env, 'stop');
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(new RegExp(`stopped vmdedup \\(pid (${starts[0].pid}, ${starts[1].pid}|${starts[1].pid}, ${starts[0].pid})\\)`));
    for (const running of starts) expect(processAlive(running.pid!)).toBe(false);

    // The pid file names a pid another process has now (handed out again: another start time): not touched, and
    // the catalog is left alone.
    const other = spawn('sleep', ['30']);
    await fs.writeFile(startPidFile(home, other.pid), `${other.pid} 1\n`);
    const refused = await cli(env, 'stop');
    expect(refused.stdout).toMatch(/is not running/);
    expect(refused.stdout).not.toMatch(/embedded catalog stopped/);
    expect(processAlive(other.pid!)).toBe(true);
    // An old pid file without a start time is not trusted either.
    await fs.writeFile(startPidFile(home, other.pid), `${other.pid}\n`);
    expect((await cli(env, 'stop')).stdout).toMatch(/is not running/);
    expect(processAlive(other.pid!)).toBe(true);
    other.kill();
  });
});
