/**
 * Backup jobs end to end: queued through pg-boss, run by `bin/worker.mjs` processes, progress and results
 * persisted in the catalog; a job whose worker is killed is failed, never left running.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJob } from '../lib/services/jobs/get-job';
import { listJobs } from '../lib/services/jobs/list-jobs';
import { requestBackup } from '../lib/services/jobs/request-backup';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { cli, tempDir } from './helpers';
import { type QueueFleet, openQueueFleet } from './queue-fleet';

describe('backup jobs (worker)', () => {
  let fixture: QueueFleet;
  let db: PrismaClient;
  let queue: PgBoss;
  let env: Record<string, string>;

  // With this file's env as it is now (a test points it at another repository).
  const startWorker = (extra: Record<string, string> = {}) => fixture.startWorker({ ...env, ...extra });
  const waitFor = async <T>(what: string, probe: () => Promise<T | undefined>, seconds = 60): Promise<T> => {
    for (const end = Date.now() + seconds * 1000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      const value = await probe();
      if (value !== undefined) return value;
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  beforeAll(async () => {
    process.env.VMDEDUP_JOB_STALE_SECONDS = '3'; // for listJobs' check in this process
    fixture = await openQueueFleet({ fleet: { bases: 1, clonesPerBase: 2, baseMiB: 64, configDiskMiB: 2, privateDiskMiB: 96, vmwareVms: 0 }, env: { VMDEDUP_JOB_STALE_SECONDS: '3' } });
    ({ db, queue, env } = fixture);
    expect((await cli(env, 'inventory')).code).toBe(0);
  });

  afterAll(() => fixture?.close());

  it('runs a queued backup in a worker process, with persisted progress, result and audit', async () => {
    const worker = startWorker();
    const { job, alreadyQueued } = await requestBackup(db, queue, { actor: 'ana', target: { source: 'kvm' } });
    expect(alreadyQueued).toBe(false);
    expect(job.state).toBe('queued');
    // asking again while it is queued or running gives the same job
    expect((await requestBackup(db, queue, { actor: 'ana', target: { source: 'kvm' } })).job.id).toBe(job.id);
    const done = await waitFor('the backup job to finish', async () => {
      const current = await getJob(db, job.id);
      return ['succeeded', 'partial', 'failed'].includes(current.state) ? current : undefined;
    });
    expect(done.state, done.error ?? '').toBe('succeeded');
    expect(done.bytesTotal).toBeGreaterThan(100 * 2 ** 20);
    expect(done.bytesDone).toBe(done.bytesTotal);
    expect(done.result).toMatchObject({ backups: expect.arrayContaining([expect.objectContaining({ vm: 'vm01' }), expect.objectContaining({ vm: 'vm02' })]) });
    const backups = JSON.parse((await cli(env, 'backups', '--json')).stdout) as { backups: unknown[] };
    expect(backups.backups).toHaveLength(2);
    const audit = await db.auditEvent.findMany({ orderBy: { id: 'asc' } });
    expect(audit.map((e) => e.action)).toEqual(['backup.request', 'backup.finished']);
    expect(audit[0].actor).toBe('ana');
    worker.kill('SIGTERM');
    await new Promise((resolve) => worker.once('exit', resolve));
  });

  it('refuses an unknown VM or source with a clear error', async () => {
    await expect(requestBackup(db, queue, { actor: 'ana', target: { vm: 'nope' } })).rejects.toThrow(/no VM named 'nope'/);
    await expect(requestBackup(db, queue, { actor: 'ana', target: { source: 'nope' } })).rejects.toThrow(/no source named 'nope'/);
  });

  it('fails the job of a worker that was killed, instead of leaving it running', async () => {
    // A fresh repository makes the next backup read and store everything: long enough to kill it midway.
    // Made explicitly: the catalog indexes the first one, and a missing or other repository is refused.
    const home = await tempDir();
    env = { ...env, VMDEDUP_REPOSITORY: path.join(home, 'repository') };
    expect((await cli(env, 'repository', 'init', '--replace')).code).toBe(0);
    const worker = startWorker();
    const { job } = await requestBackup(db, queue, { actor: 'ana', target: { vm: 'vm01' } });
    await waitFor('the job to run', async () => ((await getJob(db, job.id)).state === 'running' ? true : undefined));
    worker.kill('SIGKILL');
    const failed = await waitFor('the stale job to fail', async () => {
      const current = (await listJobs(db)).find((j) => j.id === job.id)!;
      return current.state === 'running' ? undefined : current;
    }, 30);
    expect(failed.state).toBe('failed');
    expect(failed.error).toMatch(/worker stopped during the job/);
  });

  it('fails a job whose repository is missing with a line naming it, creates none, and runs the next once it is back', async () => {
    const repository = env.VMDEDUP_REPOSITORY;
    await fs.rename(repository, `${repository}.unmounted`);
    const worker = startWorker();
    const finished = (id: string) => waitFor('the job to finish', async () => {
      const current = await getJob(db, id);
      return ['succeeded', 'partial', 'failed'].includes(current.state) ? current : undefined;
    });
    const missing = await finished((await requestBackup(db, queue, { actor: 'ana', target: { vm: 'vm02' } })).job.id);
    expect(missing.state).toBe('failed');
    expect(missing.error).toContain(`no repository at ${repository} (config.json is missing), but this catalog indexes repository`);
    await expect(fs.access(repository)).rejects.toThrow();
    await fs.rename(`${repository}.unmounted`, repository);
    const back = await finished((await requestBackup(db, queue, { actor: 'ana', target: { vm: 'vm02' } })).job.id);
    expect(back.state, back.error ?? '').toBe('succeeded');
    worker.kill('SIGTERM');
    await new Promise((resolve) => worker.once('exit', resolve));
  });
});
