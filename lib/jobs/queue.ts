/**
 * The job queue: pg-boss over the catalog database (SELECT … FOR UPDATE SKIP LOCKED underneath), so any
 * number of worker processes can take jobs. The web server only sends; workers also supervise (expiry,
 * maintenance).
 */
import PgBoss from 'pg-boss';
import { getCatalogUrl } from '../catalog/db';

/** Calls the web server makes to a worker (lib/jobs/worker-calls.ts): their own queue, served beside the long jobs. */
export const WORKER_CALL_QUEUE = 'vmdedup-calls';

/** One queue for every kind of job; the Job row (catalog) says what to do. */
export const JOB_QUEUE = 'vmdedup-jobs';

export type QueuedJobData = { jobId: string };

let sender: Promise<PgBoss> | undefined;

async function openQueue(options: { supervise: boolean }): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: await getCatalogUrl(), schema: 'pgboss', max: 2,
    supervise: options.supervise, schedule: false,
  });
  boss.on('error', (err) => process.stderr.write(`vmdedup: job queue: ${err.message}\n`));
  await boss.start();
  await boss.createQueue(JOB_QUEUE);
  await boss.createQueue(WORKER_CALL_QUEUE);
  return boss;
}

/** The process's queue handle for sending jobs (web server, CLI). */
export function getJobSender(): Promise<PgBoss> {
  sender ??= openQueue({ supervise: false });
  sender.catch(() => { sender = undefined; });
  return sender;
}

/** A worker's own handle: it fetches jobs and runs pg-boss's supervision. */
export function openWorkerQueue(): Promise<PgBoss> {
  return openQueue({ supervise: true });
}

/** pg-boss options for a job: our Job row carries its state; a dead worker's job is failed, not retried
 *  (a backup run again reuses whatever was stored). pg-boss 10 caps expiry below a day. */
export const JOB_SEND_OPTIONS = { retryLimit: 0, expireInHours: 23 } as const;
