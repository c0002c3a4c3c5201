/**
 * `npm run worker`: takes jobs (backups, scans, restores) from the queue in the catalog database and runs them, one
 * at a time per worker process, and answers the web server's calls (lib/worker/calls.ts) beside them. Several
 * workers may run (on one machine or several sharing the catalog and repository).
 */
import { failStaleJobs } from '../catalog/jobs';
import { jobStaleSeconds } from '../config';
import { prepareHome } from '../home';
import { closeCatalog, getCatalog } from '../db';
import { JOB_QUEUE, type QueuedJobData, WORKER_CALL_QUEUE, openWorkerQueue } from '../jobs/queue';
import type { WorkerCallData } from '../jobs/worker-calls';
import { answerWorkerCall } from './calls';
import { toAppError } from '../errors';
import { runJob } from './run-job';


export async function runWorker(): Promise<number> {
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

  let running: Promise<unknown> = Promise.resolve();
  await queue.work<QueuedJobData>(JOB_QUEUE, { pollingIntervalSeconds: 1, batchSize: 1 }, async ([job]) => {
    log(`job ${job.id}: started`);
    const done = runJob(db, { jobId: job.data.jobId, signal: controller.signal });
    running = done;
    const state = await done;
    log(`job ${job.id}: ${state ?? 'skipped (no longer queued)'}`);
  });
  // The web server's calls (a restore plan for the wizard, a source check): served beside the long jobs.
  await queue.work<WorkerCallData>(WORKER_CALL_QUEUE, { pollingIntervalSeconds: 0.5, batchSize: 1 }, async ([call]) => answerWorkerCall(db, call.data));
  log('worker: waiting for jobs');

  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
  });
  log('worker: stopping (a running job is marked failed; the next run reuses what it stored)');
  clearInterval(sweeper);
  controller.abort();
  await running.catch(() => undefined);
  await queue.stop({ graceful: true, timeout: 5000 }).catch(() => undefined);
  await closeCatalog();
  return 0;
}

function log(message: string): void {
  process.stdout.write(`vmdedup: ${message}\n`);
}
