/**
 * Adversarial review of scheduled runs' retries: each test states what should hold and fails while the defect it
 * names is there.
 */
import PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { JOB_QUEUE } from '../lib/jobs/queue';
import { failStaleJobs } from '../lib/services/jobs/fail-stale-jobs';
import { queueScheduledRun } from '../lib/services/jobs/queue-scheduled-run';
import { saveScheduledJob } from '../lib/services/jobs/scheduled-jobs';
import { fireDueScheduledJobs } from '../lib/services/jobs/schedules';
import { createMigratedCatalog } from './helpers';

describe('retries of scheduled runs (adversarial)', () => {
  let db: PrismaClient;
  let queue: PgBoss;

  beforeAll(async () => {
    const catalog = await createMigratedCatalog();
    db = catalog.db;
    await db.source.create({ data: { name: 'kvm', type: 'libvirt', path: '/nonexistent/kvm' } });
    queue = new PgBoss({ connectionString: catalog.url, schema: 'pgboss', supervise: false, schedule: false });
    await queue.start();
    await queue.createQueue(JOB_QUEUE);
  });

  afterAll(async () => {
    await queue?.stop({ graceful: false });
    await db?.$disconnect();
  });

  const clean = async () => {
    await db.job.deleteMany({});
    await db.scheduledJob.deleteMany({});
  };

  it('two queuings of one scheduled job at once (a retry on one worker, the schedule on another; Run now) make one run, not two', async () => {
    try {
      for (let round = 0; round < 5; round++) {
        const job = await saveScheduledJob(db, { name: `racy${round}`, schedule: '0 2 * * *', timeZone: 'UTC', source: 'kvm' })
          .then(() => db.scheduledJob.findUniqueOrThrow({ where: { name: `racy${round}` } }));
        const results = await Promise.all([
          queueScheduledRun(db, queue, job, { actor: 'scheduler', why: 'retry', attempt: 2, retries: 2, onlyVms: [{ source: 'kvm', vm: 'vm01' }] }),
          queueScheduledRun(db, queue, job, { actor: 'scheduler', why: 'scheduled' }),
          queueScheduledRun(db, queue, job, { actor: 'alice', why: 'request' }),
        ]);
        const active = await db.job.count({ where: { scheduledJobId: job.id, state: { in: ['queued', 'running'] } } });
        expect(active, `round ${round}: one run of a job at a time`).toBe(1);
        expect(results.filter((r) => !r.alreadyQueued)).toHaveLength(1);
        expect((await db.scheduledJob.findUniqueOrThrow({ where: { id: job.id } })).lastRunJobId).toBe(results.find((r) => !r.alreadyQueued)!.job.id);
      }
    } finally {
      await clean();
    }
  });

  it('a retry of a retry whose worker died retries the same VMs, not the whole job', async () => {
    try {
      await saveScheduledJob(db, { name: 'narrow', schedule: '0 2 * * *', timeZone: 'UTC', source: 'kvm', retries: 3, retryDelayMinutes: 1 });
      const job = await db.scheduledJob.findUniqueOrThrow({ where: { name: 'narrow' } });
      const onlyVms = [{ source: 'kvm', vm: 'vm07' }];
      // Attempt 2 (a retry of vm07 only) was running when its worker was killed with -9.
      const { job: retry } = await queueScheduledRun(db, queue, job, { actor: 'scheduler', why: 'retry', attempt: 2, retries: 3, onlyVms });
      await db.job.update({ where: { id: retry.id }, data: { state: 'running', startedAt: new Date(), heartbeatAt: new Date(Date.now() - 3_600_000) } });
      expect((await failStaleJobs(db)).map((job) => job.id)).toEqual([retry.id]);
      const failed = await db.job.findUniqueOrThrow({ where: { id: retry.id } });
      expect(failed.retryAt, 'a dead worker\'s retry is tried again').not.toBeNull();
      expect(await failStaleJobs(db), 'once').toEqual([]);
      const fired = await fireDueScheduledJobs(db, queue, new Date(failed.retryAt!.getTime() + 1000));
      expect(fired).toEqual(['narrow']);
      const third = await db.job.findFirstOrThrow({ where: { scheduledJobId: job.id, attempt: 3 } });
      expect(third.target, 'attempt 3 backs up what attempt 2 was for').toEqual({ scheduledJob: 'narrow', onlyVms });
    } finally {
      await clean();
    }
  });

  it('a retry pending when the job was disabled does not fire the moment it is enabled again days later', async () => {
    try {
      // Daily, 12 hours away from now: no scheduled fire in the last minutes.
      const hour = (new Date().getUTCHours() + 12) % 24;
      await saveScheduledJob(db, { name: 'paused', schedule: `0 ${hour} * * *`, timeZone: 'UTC', source: 'kvm' });
      const job = await db.scheduledJob.findUniqueOrThrow({ where: { name: 'paused' } });
      // Its run failed three days ago; its retry was due ten minutes after; the job was disabled before it fired.
      const { job: run } = await queueScheduledRun(db, queue, job, { actor: 'scheduler', why: 'scheduled' });
      const finishedAt = new Date(Date.now() - 3 * 86_400_000);
      await db.job.update({ where: { id: run.id }, data: { state: 'failed', finishedAt, retryAt: new Date(finishedAt.getTime() + 600_000) } });
      await saveScheduledJob(db, { name: 'paused', enabled: false }, { edit: true });
      await saveScheduledJob(db, { name: 'paused', enabled: true }, { edit: true });
      expect(await fireDueScheduledJobs(db, queue), 'its fires while disabled were not missed; nor is a three-day-old retry').toEqual([]);
    } finally {
      await clean();
    }
  });
});
