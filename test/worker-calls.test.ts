/**
 * The web server's calls to a worker (lib/jobs/worker-calls.ts) against a real worker process: answers, expected
 * errors with their code, input the worker refuses itself, and a clear error when no worker answers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFleet } from '../lib/demo/fleet';
import { AppError } from '../lib/errors';
import { JOB_QUEUE, WORKER_CALL_QUEUE, callQueueOf, sourceLane } from '../lib/jobs/queue';
import { callWorker } from '../lib/jobs/worker-calls';
import { cli, createMigratedCatalog, projectRoot, tempDir } from './helpers';

describe('worker calls', () => {
  let queue: PgBoss;
  let env: Record<string, string>;
  let home: string;
  let worker: ChildProcess | undefined;
  let backupId: string;
  let fleetDir: string;
  const saved = { ...process.env };

  const refusal = async (promise: Promise<unknown>) => {
    const err = await promise.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  };

  beforeAll(async () => {
    home = await tempDir();
    const catalog = await createMigratedCatalog();
    env = { VMDEDUP_HOME: home, DATABASE_URL: catalog.url };
    process.env.DATABASE_URL = catalog.url; // callWorker finds in the catalog which source a call is about
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 2, baseMiB: 4, configDiskMiB: 1, privateDiskMiB: 1, vmwareVms: 0 });
    fleetDir = fleet.libvirtDir;
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleetDir)).code).toBe(0);
    expect((await cli(env, 'backup')).code).toBe(0);
    backupId = (JSON.parse((await cli(env, 'backups', '--vm', 'vm01', '--json')).stdout) as { backups: { backupId: string }[] }).backups[0].backupId;
    queue = new PgBoss({ connectionString: catalog.url, schema: 'pgboss', supervise: false, schedule: false });
    await queue.start();
    await queue.createQueue(JOB_QUEUE);
    await queue.createQueue(WORKER_CALL_QUEUE);
  });

  afterAll(async () => {
    process.env = saved;
    worker?.kill('SIGKILL');
    await queue?.stop({ graceful: false });
  });

  const plan = (dir: string) => ({ vm: 'vm01', backupId, target: { kind: 'folder' as const, dir }, policy: 'no-overwrite' as const, choice: 'reattach' as const });

  it('says so when no worker answers, and withdraws the call', async () => {
    process.env.VMDEDUP_WORKER_CALL_TIMEOUT_MS = '1500';
    const err = await refusal(callWorker('plan-restore', plan(path.join(home, 'restores', 'vm01')), { queue }));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(/no job worker serving source 'kvm' answered within 2 s, so the server could not plan the restore: is one running .*--sources kvm/);
    expect(await queue.getQueueSize(callQueueOf(sourceLane('kvm')))).toBe(0); // a worker started later does not run it
    expect(await queue.getQueueSize(WORKER_CALL_QUEUE)).toBe(0);
    delete process.env.VMDEDUP_WORKER_CALL_TIMEOUT_MS;
  });

  it('a calls-only worker plans restores and checks source folders; its refusals keep their code', async () => {
    worker = spawn(process.execPath, [path.join(projectRoot, 'bin', 'worker.mjs'), '--only', 'calls'], { env: { ...process.env, ...env }, stdio: 'ignore' });
    const planned = await callWorker('plan-restore', plan(path.join(home, 'restores', 'vm01')), { queue });
    expect(planned.vm).toBe('vm01');
    expect(planned.disks.length).toBeGreaterThan(0);
    expect(planned.disks.every((d) => !d.destination || d.destination.startsWith(path.join(home, 'restores', 'vm01')))).toBe(true);

    const outside = await refusal(callWorker('plan-restore', plan('/etc/cron.d/x'), { queue }));
    expect(outside.code).toBe('FORBIDDEN');
    expect(outside.message).toMatch(/may write only under .*restores/);

    // The worker validates again what the web server sends (the less trusted side).
    const forged = await refusal(callWorker('plan-restore', { ...plan('relative/dir') }, { queue }));
    expect(forged.code).toBe('BAD_INPUT');

    const unreadable = await refusal(callWorker('add-source', { actor: 'ada', source: { name: 'gone', type: 'libvirt', path: path.join(home, 'no-such-folder') } }, { queue }));
    expect(unreadable.code).toBe('BAD_INPUT');
    expect((await callWorker('add-source', { actor: 'ada', source: { name: 'kvm2', type: 'libvirt', path: fleetDir } }, { queue })).name).toBe('kvm2');
    const taken = await refusal(callWorker('add-source', { actor: 'ada', source: { name: 'kvm2', type: 'libvirt', path: fleetDir } }, { queue }));
    expect(taken.code).toBe('CONFLICT');
  });
});
