/**
 * Backup jobs on a schedule: which runs fire when (an injected clock against a real catalog and pg-boss queue), and a
 * real worker process that fires a job missed while no worker ran, once, runs it and applies its retention.
 */
import type PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { saveScheduledJob } from '../lib/services/jobs/scheduled-jobs';
import { fireDueScheduledJobs } from '../lib/services/jobs/schedules';
import { nextFire, scheduleProblem } from '../lib/services/jobs/cron';
import { cli } from './helpers';
import { type QueueFleet, openQueueFleet } from './queue-fleet';

describe('backup job schedules', () => {
  let fixture: QueueFleet;
  let db: PrismaClient;
  let queue: PgBoss;
  let env: Record<string, string>;

  beforeAll(async () => {
    fixture = await openQueueFleet({ fleet: { bases: 1, clonesPerBase: 2, baseMiB: 8, configDiskMiB: 1, privateDiskMiB: 4, vmwareVms: 0 } });
    ({ db, queue, env } = fixture);
  });

  afterAll(() => fixture?.close());

  it('computes fires in the job\'s time zone and refuses bad schedules', () => {
    // 02:00 in Berlin is 01:00 UTC in winter, 00:00 UTC in summer.
    expect(nextFire('0 2 * * *', 'Europe/Berlin', new Date('2026-12-01T12:00:00Z')).toISOString()).toBe('2026-12-02T01:00:00.000Z');
    expect(nextFire('0 2 * * *', 'Europe/Berlin', new Date('2026-07-01T12:00:00Z')).toISOString()).toBe('2026-07-02T00:00:00.000Z');
    expect(nextFire('30 4 * * 1', 'UTC', new Date('2026-12-01T00:00:00Z')).toISOString()).toBe('2026-12-07T04:30:00.000Z');
    expect(scheduleProblem('0 2 * * *', 'UTC')).toBeUndefined();
    expect(scheduleProblem('61 * * * *', 'UTC')).toMatch(/not a cron expression/);
    expect(scheduleProblem('0 0 2 * * *', 'UTC')).toMatch(/seconds field/);
    expect(scheduleProblem('0 2 * * *', 'Mars/Olympus')).toMatch(/unknown time zone/);
  });

  it('fires a job missed for days once, not once per missed fire; again only at its next fire; one worker of two', async () => {
    await saveScheduledJob(db, { name: 'daily', schedule: '0 2 * * *', timeZone: 'UTC', source: 'kvm' });
    const t0 = new Date('2026-11-20T12:00:00Z');
    await db.scheduledJob.update({ where: { name: 'daily' }, data: { scheduledAt: t0 } });
    const runsOf = async () => db.job.count({ where: { scheduledJobId: (await db.scheduledJob.findUniqueOrThrow({ where: { name: 'daily' } })).id } });
    // Down from Nov 20 to Nov 23 noon: three fires missed (21st, 22nd, 23rd at 02:00); two workers wake at once.
    const now = new Date('2026-11-23T12:00:00Z');
    const fired = await Promise.all([fireDueScheduledJobs(db, queue, now), fireDueScheduledJobs(db, queue, now)]);
    expect(fired.flat()).toEqual(['daily']);
    expect(await runsOf()).toBe(1);
    expect(await fireDueScheduledJobs(db, queue, new Date('2026-11-24T01:59:00Z'))).toEqual([]);
    // Its run is still queued at the next fire: the same run stands, no second one.
    expect(await fireDueScheduledJobs(db, queue, new Date('2026-11-24T02:00:30Z'))).toEqual(['daily']);
    expect(await runsOf()).toBe(1);
    await db.job.updateMany({ data: { state: 'succeeded' } });
    expect(await fireDueScheduledJobs(db, queue, new Date('2026-11-25T02:00:30Z'))).toEqual(['daily']);
    expect(await runsOf()).toBe(2);
    // Disabled: never.
    await saveScheduledJob(db, { name: 'daily', enabled: false }, { edit: true });
    expect(await fireDueScheduledJobs(db, queue, new Date('2026-12-25T02:00:30Z'))).toEqual([]);
    await db.job.updateMany({ data: { state: 'succeeded' } });
    await db.scheduledJob.deleteMany({});
  });

  it('gc and verify jobs: scheduled like backups, verify covering what was not verified for N days', async () => {
    expect((await cli(env, 'backup')).code).toBe(0);
    expect((await cli(env, 'job', 'add', 'bad-gc', '--kind', 'gc', '--schedule', '0 4 * * 0', '--keep-last', '1')).stderr).toMatch(/a gc job collects the whole repository/);
    expect((await cli(env, 'job', 'add', 'bad-kind', '--kind', 'defrag', '--schedule', '0 4 * * 0')).stderr).toMatch(/job kind 'defrag': backup, gc, verify or sync/);
    expect((await cli(env, 'job', 'add', 'weekly-gc', '--kind', 'gc', '--schedule', '0 4 * * 0', '--time-zone', 'UTC')).code).toBe(0);
    expect((await cli(env, 'job', 'add', 'check', '--kind', 'verify', '--schedule', '0 5 * * *', '--time-zone', 'UTC', '--outdated-after', '7')).code).toBe(0);
    const gc = await cli(env, 'job', 'run', 'weekly-gc', '--json');
    expect(gc.code, gc.stderr).toBe(0);
    expect(JSON.parse(gc.stdout)).toMatchObject({ gc: { pendingChunks: 0, removedChunks: expect.any(Number) } });
    const first = await cli(env, 'job', 'run', 'check', '--json');
    expect(first.code, first.stderr).toBe(0);
    const verified = JSON.parse(first.stdout) as { verify: { images: { status: string }[]; checkedChunks: number } };
    expect(verified.verify.images.length).toBeGreaterThan(0);
    expect(verified.verify.images.every((i) => i.status === 'ok')).toBe(true);
    // Everything was verified just now: the next run within 7 days has nothing to re-read.
    const again = JSON.parse((await cli(env, 'job', 'run', 'check', '--json')).stdout) as { verify: { images: unknown[] } };
    expect(again.verify.images).toEqual([]);
    const list = JSON.parse((await cli(env, 'job', 'list', '--json')).stdout) as { jobs: { name: string; kind: string; lastSuccessAt: string | null }[] };
    expect(list.jobs.map((j) => [j.name, j.kind, !!j.lastSuccessAt])).toEqual([['check', 'verify', true], ['weekly-gc', 'gc', true]]);
    // Due, they are queued as jobs of their kind.
    await db.scheduledJob.updateMany({ data: { scheduledAt: new Date(Date.now() - 8 * 86_400_000) } });
    expect((await fireDueScheduledJobs(db, queue)).sort()).toEqual(['check', 'weekly-gc']);
    expect((await db.job.findMany({ where: { scheduledJobId: { not: null }, state: 'queued' }, orderBy: { kind: 'asc' } })).map((j) => [j.kind, j.label])).toEqual([['gc', 'Garbage collection weekly-gc'], ['verify', 'Verify job check']]);
    await db.job.updateMany({ data: { state: 'succeeded' } });
    await db.scheduledJob.deleteMany({});
  }, 120_000);

  it('a worker fires a run missed while no worker ran, once, backs up the job\'s VMs and applies its retention', async () => {
    // Two backups of vm01 exist; the job keeps the last one of each VM it backs up (vm0* only: both VMs).
    for (let i = 0; i < 2; i++) expect((await cli(env, 'backup', '--vm', 'vm01')).code).toBe(0);
    const before = (JSON.parse((await cli(env, 'backups', '--json')).stdout) as { backups: { vm: string }[] }).backups.length;
    expect((await cli(env, 'job', 'add', 'every-minute', '--schedule', '* * * * *', '--time-zone', 'UTC', '--vm', 'vm0*', '--keep-last', '1')).code).toBe(0);
    // Its last fire was 10 minutes ago: ten fires missed.
    await db.scheduledJob.update({ where: { name: 'every-minute' }, data: { scheduledAt: new Date(Date.now() - 10 * 60_000) } });
    const worker = fixture.startWorker({ VMDEDUP_SCHEDULER_TICK_MS: '500' });
    const job = await db.scheduledJob.findUniqueOrThrow({ where: { name: 'every-minute' } });
    let run;
    for (const end = Date.now() + 90_000; Date.now() < end; await new Promise((r) => setTimeout(r, 300))) {
      run = await db.job.findFirst({ where: { scheduledJobId: job.id, state: { in: ['succeeded', 'partial', 'failed'] } } });
      if (run) break;
    }
    expect(run, worker.output()).toBeTruthy();
    expect(run!.state, run!.error ?? '').toBe('succeeded');
    expect(await db.job.count({ where: { scheduledJobId: job.id } })).toBe(1);
    expect(run!.result).toMatchObject({ backups: [expect.objectContaining({ vm: 'vm01' }), expect.objectContaining({ vm: 'vm02' })] });
    // Every earlier backup of the two VMs went (keep-last 1: this run's).
    expect((run!.result as { pruned: { removed: unknown[] } }).pruned.removed).toHaveLength(before);
    const backups = JSON.parse((await cli(env, 'backups', '--json')).stdout) as { backups: { vm: string }[] };
    expect(backups.backups.map((b) => b.vm).sort()).toEqual(['vm01', 'vm02']);
    expect((await db.scheduledJob.findUniqueOrThrow({ where: { name: 'every-minute' } })).lastSuccessAt).not.toBeNull();
    worker.kill('SIGTERM');
    await new Promise((resolve) => worker.once('exit', resolve));
  }, 120_000);
});
