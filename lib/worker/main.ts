/**
 * `npm run worker`: takes jobs (backups, scans, restores) from the queue in the catalog database and runs them, one
 * at a time per worker process, and answers the web server's calls (lib/worker/calls.ts) beside them. Several
 * workers may run (on one machine or several sharing the catalog and repository).
 */
import { failStaleJobs } from '../services/jobs/fail-stale-jobs';
import { jobStaleSeconds } from '../config';
import { prepareHome } from '../home';
import { closeCatalog, getCatalog, getCatalogSql } from '../catalog/db';
import { JOB_QUEUE, type QueuedJobData, WORKER_CALL_QUEUE, openWorkerQueue } from '../jobs/queue';
import type { WorkerCallData } from '../jobs/worker-calls';
import { answerWorkerCall } from './calls';
import { toAppError } from '../errors';
import { runJob } from '../services/jobs/run-job';
import { SCHEDULER_TICK_MS, fireDueScheduledJobs, watchRpo } from '../services/jobs/schedules';

/** What a worker serves: the long jobs, the web server's calls, or both (the default). */
export type WorkerLanes = 'all' | 'jobs' | 'calls';

/** `npm run worker [-- --only jobs|calls]`: a calls-only worker keeps planning quick while others run long jobs. */
export function parseWorkerArgs(argv: string[]): WorkerLanes | string {
  if (argv.length === 0) return 'all';
  if (argv.length === 2 && argv[0] === '--only' && (argv[1] === 'jobs' || argv[1] === 'calls')) return argv[1];
  return `usage: vmdedup worker [--only jobs|calls]  (got '${argv.join(' ')}')`;
}

export async function runWorker(argv: string[] = []): Promise<number> {
  const lanes = parseWorkerArgs(argv);
  if (lanes !== 'all' && lanes !== 'jobs' && lanes !== 'calls') {
    process.stderr.write(`vmdedup: ${lanes}\n`);
    return 2;
  }
  for (const notice of await prepareHome()) log(notice);
  const controller = new AbortController();
  const db = await getCatalog();
  const queue = await openWorkerQueue();
  const sweep = async () => {
    const failed = await failStaleJobs(db).catch((err) => { log(`stale job check failed: ${toAppError(err).message}`); return []; });
    // Tell pg-boss too, so it never hands a dead worker's job out again.
    if (failed.length) await queue.fail(JOB_QUEUE, failed).catch(() => undefined);
  };
  await sweep();
  const sweeper = setInterval(sweep, Math.min(30_000, (jobStaleSeconds() * 1000) / 2));
  // Backup jobs: what is due now (a run missed while no worker ran included, once) is queued, then every tick.
  const schedule = async () => {
    const fired = await fireDueScheduledJobs(db, queue).catch((err) => { log(`scheduler: ${toAppError(err).message}`); return []; });
    for (const name of fired) log(`scheduler: job ${name} queued`);
    const behind = await watchRpo(db, await getCatalogSql()).catch((err) => { log(`rpo watch: ${toAppError(err).message}`); return []; });
    for (const { job, behind: vms } of behind) log(`rpo watch: job ${job}: ${vms.length} VMs without a good backup within the RPO (alerted)`);
  };
  let scheduler: NodeJS.Timeout | undefined;
  if (lanes !== 'calls') {
    await schedule();
    scheduler = setInterval(schedule, schedulerTickMs());
  }

  let running: Promise<unknown> = Promise.resolve();
  if (lanes !== 'calls') {
    await queue.work<QueuedJobData>(JOB_QUEUE, { pollingIntervalSeconds: 1, batchSize: 1 }, async ([job]) => {
      log(`job ${job.id}: started`);
      const done = runJob(db, { jobId: job.data.jobId, signal: controller.signal });
      running = done;
      const state = await done;
      log(`job ${job.id}: ${state ?? 'skipped (no longer queued)'}`);
    });
  }
  // The web server's calls (a restore plan for the wizard, a source check): served beside the long jobs.
  if (lanes !== 'jobs') {
    await queue.work<WorkerCallData>(WORKER_CALL_QUEUE, { pollingIntervalSeconds: 0.5, batchSize: 1 }, async ([call]) => answerWorkerCall(db, call.data));
  }
  log(`worker: waiting for ${lanes === 'all' ? 'jobs and calls' : lanes}`);

  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
  });
  log('worker: stopping (a running job is marked failed; the next run reuses what it stored)');
  clearInterval(sweeper);
  clearInterval(scheduler);
  controller.abort();
  await running.catch(() => undefined);
  await queue.stop({ graceful: true, timeout: 5000 }).catch(() => undefined);
  await closeCatalog();
  return 0;
}

/** How often the scheduler looks for due backup jobs (VMDEDUP_SCHEDULER_TICK_MS: tests look more often). */
function schedulerTickMs(): number {
  const value = Number(process.env.VMDEDUP_SCHEDULER_TICK_MS);
  return value > 0 ? value : SCHEDULER_TICK_MS;
}

function log(message: string): void {
  process.stdout.write(`vmdedup: ${message}\n`);
}
