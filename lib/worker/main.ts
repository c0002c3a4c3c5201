/**
 * `npm run worker`: takes jobs (backups, scans, restores) from the queue in the catalog database and runs them, one
 * at a time per worker process, and answers the web server's calls (lib/worker/calls.ts) beside them. Several
 * workers may run, on one machine or on several sharing the catalog and the repository; a worker that names the
 * sources it can reach (`--sources a,b`) takes only their work and the repository's (lib/jobs/queue.ts, lanes).
 */
import type PgBoss from 'pg-boss';
import { failStaleJobs } from '../services/jobs/fail-stale-jobs';
import { jobStaleSeconds } from '../config';
import { prepareHome } from '../home';
import { closeCatalog, getCatalog, getCatalogSql } from '../catalog/db';
import { type QueuedJobData, type ServedSources, ensureQueue, jobQueueOf, callQueueOf, openWorkerQueue, parseLane, queuesServed, queuesWithWork, sourceLane } from '../jobs/queue';
import type { WorkerCallData } from '../jobs/worker-calls';
import { answerWorkerCall } from './calls';
import { toAppError } from '../errors';
import { runJob } from '../services/jobs/run-job';
import { SCHEDULER_TICK_MS, fireDueScheduledJobs, watchRpo } from '../services/jobs/schedules';
import { WORKER_BEAT_MS, type WorkerLanes, WorkerNameTaken, announceWorker, forgetDeadWorkers, retireWorker, workerName } from '../services/jobs/workers';
import { reviewQueuedJobs } from '../services/jobs/review-queued-jobs';
import { SOURCE_NAME, SOURCE_NAME_RULE } from '../validation/sources';

const USAGE = 'usage: vmdedup worker [--only jobs|calls] [--sources <name>,<name>…]';

export type WorkerOptions = { lanes: WorkerLanes; served: ServedSources };

/**
 * `npm run worker [-- --only jobs|calls] [--sources a,b]`: a calls-only worker keeps planning quick while others run
 * long jobs; `--sources` (or VMDEDUP_WORKER_SOURCES) names the sources this host reaches (default: every source).
 */
export function parseWorkerArgs(argv: string[], env: Record<string, string | undefined> = process.env): WorkerOptions | string {
  let lanes: WorkerLanes = 'all';
  let sources = env.VMDEDUP_WORKER_SOURCES;
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--only' && (value === 'jobs' || value === 'calls')) lanes = value;
    else if (flag === '--sources' && value !== undefined) sources = value;
    else return `${USAGE}  (got '${argv.join(' ')}')`;
  }
  if (sources === undefined) return { lanes, served: { every: true } };
  const names = [...new Set(sources.split(',').map((name) => name.trim()).filter(Boolean))];
  // Given but empty (a unit file's unset variable): not "every source", which would take work this host cannot reach.
  if (names.length === 0) return '--sources (or VMDEDUP_WORKER_SOURCES) names no source: give the sources this host reaches, or leave it out to serve every source';
  const bad = names.find((name) => !SOURCE_NAME.test(name));
  if (bad !== undefined) return `--sources: '${bad}' is not a source name (${SOURCE_NAME_RULE})`;
  return { lanes, served: { every: false, names } };
}

export async function runWorker(argv: string[] = []): Promise<number> {
  const options = parseWorkerArgs(argv);
  if (typeof options === 'string') {
    process.stderr.write(`vmdedup: ${options}\n`);
    return 2;
  }
  const { lanes, served } = options;
  for (const notice of await prepareHome()) log(notice);
  const name = workerName();
  const controller = new AbortController();
  const db = await getCatalog();
  const queue = await openWorkerQueue();
  // Its sources' queues exist before anyone sends to them, and the catalog knows what it serves.
  if (!served.every) {
    for (const source of served.names) {
      await ensureQueue(queue, jobQueueOf(sourceLane(source)));
      await ensureQueue(queue, callQueueOf(sourceLane(source)));
    }
    const known = new Set((await db.source.findMany({ select: { name: true } })).map((s) => s.name));
    const unknown = served.names.filter((source) => !known.has(source));
    if (unknown.length) log(`worker: the catalog has no source named ${unknown.map((s) => `'${s}'`).join(', ')} (yet): its work is taken once it is added`);
  }
  try {
    await announceWorker(db, { name, served, lanes, first: true });
  } catch (err) {
    if (!(err instanceof WorkerNameTaken)) throw err;
    process.stderr.write(`vmdedup: ${err.message}\n`);
    await queue.stop({ graceful: false }).catch(() => undefined);
    await closeCatalog();
    return 2;
  }
  const announce = () => announceWorker(db, { name, served, lanes }).catch((err) => log(`worker: could not tell the catalog it is alive: ${toAppError(err).message}`));
  const beat = setInterval(announce, WORKER_BEAT_MS);

  const sweep = async () => {
    const failed = await failStaleJobs(db).catch((err) => { log(`stale job check failed: ${toAppError(err).message}`); return []; });
    // Tell pg-boss too, so it never hands a dead worker's job out again.
    for (const job of failed) await queue.fail(jobQueueOf(parseLane(job.lane)), job.id).catch(() => undefined);
    await forgetDeadWorkers(db).catch(() => undefined);
    await reviewQueuedJobs(db, queue).catch((err) => log(`queued job review failed: ${toAppError(err).message}`));
  };
  await sweep();
  const sweeper = setInterval(sweep, Math.min(30_000, (jobStaleSeconds() * 1000) / 2));
  // Backup jobs: what is due now (a run missed while no worker ran included, once) is queued, then every tick.
  const schedule = async () => {
    const fired = await fireDueScheduledJobs(db, queue).catch((err) => { log(`scheduler: ${toAppError(err).message}`); return []; });
    for (const job of fired) log(`scheduler: job ${job} queued`);
    const behind = await watchRpo(db, await getCatalogSql()).catch((err) => { log(`rpo watch: ${toAppError(err).message}`); return []; });
    for (const { job, behind: vms } of behind) log(`rpo watch: job ${job}: ${vms.length} VMs without a good backup within the RPO (alerted)`);
  };
  let scheduler: NodeJS.Timeout | undefined;
  if (lanes !== 'calls') {
    await schedule();
    scheduler = setInterval(schedule, schedulerTickMs());
  }

  const serving: Promise<void>[] = [];
  if (lanes !== 'calls') {
    serving.push(serveQueues<QueuedJobData>(queue, { served, what: 'jobs', pollMs: 1000, signal: controller.signal }, async (job, id) => {
      log(`job ${id}: started`);
      const state = await runJob(db, { jobId: job.jobId, signal: controller.signal, worker: name });
      log(`job ${id}: ${state ?? 'skipped (no longer queued)'}`);
      return null;
    }));
  }
  // The web server's calls (a restore plan for the wizard, a source check): served beside the long jobs.
  if (lanes !== 'jobs') {
    serving.push(serveQueues<WorkerCallData>(queue, { served, what: 'calls', pollMs: 500, signal: controller.signal }, async (call) => answerWorkerCall(db, call)));
  }
  const what = lanes === 'all' ? 'jobs and calls' : lanes;
  log(`worker ${name}: waiting for ${what} ${served.every ? 'of every source' : `of source${served.names.length === 1 ? '' : 's'} ${served.names.join(', ')}`} and of the repository`);

  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
  });
  log('worker: stopping (a running job is marked failed; the next run reuses what it stored)');
  clearInterval(sweeper);
  clearInterval(scheduler);
  clearInterval(beat);
  controller.abort();
  await Promise.all(serving);
  await retireWorker(db, name).catch(() => undefined);
  await queue.stop({ graceful: true, timeout: 5000 }).catch(() => undefined);
  await closeCatalog();
  return 0;
}

/**
 * Takes work from the queues this worker serves, one item at a time (its sources' queues first), until `signal`:
 * one loop over several queues, so a worker never runs two jobs at once. An item's answer completes it; a throw
 * fails it (pg-boss keeps it, not retried).
 */
async function serveQueues<T extends object>(
  boss: PgBoss, options: { served: ServedSources; what: 'jobs' | 'calls'; pollMs: number; signal: AbortSignal },
  handle: (data: T, id: string) => Promise<object | null>,
): Promise<void> {
  const { served, what, pollMs, signal } = options;
  const queues = queuesServed(served, what);
  let lastError = '';
  while (!signal.aborted) {
    let took = false;
    try {
      for (const name of await queuesWithWork(boss, queues)) {
        const [item] = await boss.fetch<T>(name, { batchSize: 1 });
        if (!item) continue;
        took = true;
        let answer: object | null;
        try {
          answer = await handle(item.data, item.id);
        } catch (err) {
          await boss.fail(name, item.id, { message: toAppError(err).message }).catch(() => undefined);
          break;
        }
        await boss.complete(name, item.id, answer ?? undefined);
        break;
      }
      lastError = '';
    } catch (err) {
      // The catalog away: said once, then tried again each poll.
      const message = toAppError(err).message;
      if (message !== lastError) log(`${what}: the job queue is unreachable: ${message}`);
      lastError = message;
    }
    if (!took) await sleep(pollMs, signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() { clearTimeout(timer); signal.removeEventListener('abort', done); resolve(); }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** How often the scheduler looks for due backup jobs (VMDEDUP_SCHEDULER_TICK_MS: tests look more often). */
function schedulerTickMs(): number {
  const value = Number(process.env.VMDEDUP_SCHEDULER_TICK_MS);
  return value > 0 ? value : SCHEDULER_TICK_MS;
}

function log(message: string): void {
  process.stdout.write(`vmdedup: ${message}\n`);
}
