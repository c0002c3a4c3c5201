/**
 * The job queue: pg-boss over the catalog database (SELECT … FOR UPDATE SKIP LOCKED underneath), so any
 * number of worker processes, on any number of hosts, can take jobs. The web server only sends; workers also
 * supervise (expiry, maintenance).
 *
 * Jobs and calls are routed by **lane**: what a worker must reach to do them. Work on one source's disks (its
 * backups, scans, restores, restore plans, folder checks) goes to that source's own queue, taken only by workers
 * that serve the source (`npm run worker -- --sources a,b`, or every source when none are named); a backup of every
 * source goes to a queue only workers serving every source take; work on the repository alone (gc, verify, prune,
 * sync) goes to a queue every worker takes.
 */
import PgBoss from 'pg-boss';
import { getCatalogUrl } from '../catalog/db';
import { JOB_QUEUE_SCHEMA } from '../catalog/catalog-roles';

/** Calls the web server makes to a worker (lib/jobs/worker-calls.ts): their own queue, served beside the long jobs. */
export const WORKER_CALL_QUEUE = 'vmdedup-calls';

/** The jobs any worker can do (they need the repository alone); the Job row (catalog) says what to do. */
export const JOB_QUEUE = 'vmdedup-jobs';

/** Where a job or call can run: on any worker, on a worker serving every source, or on one serving this source. */
export type Lane = { kind: 'any' } | { kind: 'all-sources' } | { kind: 'source'; source: string };

export const ANY_LANE: Lane = { kind: 'any' };
export const ALL_SOURCES_LANE: Lane = { kind: 'all-sources' };
export const sourceLane = (source: string): Lane => ({ kind: 'source', source });

const JOB_SOURCE_QUEUE_PREFIX = 'vmdedup-jobs-source-';
const CALL_SOURCE_QUEUE_PREFIX = 'vmdedup-calls-source-';

/** The pg-boss queue of a lane's jobs (source names are letters, digits, `.`, `-`, `_`: safe in a queue name). */
export function jobQueueOf(lane: Lane): string {
  return lane.kind === 'any' ? JOB_QUEUE : lane.kind === 'all-sources' ? 'vmdedup-jobs-all-sources' : JOB_SOURCE_QUEUE_PREFIX + lane.source;
}

/** The pg-boss queue of a lane's calls (no call needs every source). */
export function callQueueOf(lane: Lane): string {
  return lane.kind === 'source' ? CALL_SOURCE_QUEUE_PREFIX + lane.source : WORKER_CALL_QUEUE;
}

/** A lane as the Job row keeps it: 'any', 'all-sources' or 'source:<name>'. */
export function laneText(lane: Lane): string {
  return lane.kind === 'source' ? `source:${lane.source}` : lane.kind;
}

export function parseLane(text: string | null | undefined): Lane {
  if (text === 'all-sources') return ALL_SOURCES_LANE;
  if (text?.startsWith('source:')) return sourceLane(text.slice('source:'.length));
  return ANY_LANE; // also a job queued before lanes existed: it went to the one queue there was
}

/** What a worker serves: every source, or only the named ones. */
export type ServedSources = { every: true } | { every: false; names: string[] };

export function servesLane(served: ServedSources, lane: Lane): boolean {
  return lane.kind === 'any' || served.every || (lane.kind === 'source' && served.names.includes(lane.source));
}

/**
 * The queues a worker takes jobs (or calls) from: named ones, and for a worker serving every source also every
 * source's queue there is (by their prefix: a source added since is served at once, not after a listing).
 */
export function queuesServed(served: ServedSources, what: 'jobs' | 'calls'): { names: string[]; prefix?: string } {
  const prefix = what === 'jobs' ? JOB_SOURCE_QUEUE_PREFIX : CALL_SOURCE_QUEUE_PREFIX;
  if (served.every) return { names: what === 'calls' ? [WORKER_CALL_QUEUE] : [jobQueueOf(ALL_SOURCES_LANE), JOB_QUEUE], prefix };
  const own = served.names.map((name) => prefix + name);
  return { names: what === 'calls' ? [...own, WORKER_CALL_QUEUE] : [...own, JOB_QUEUE] };
}

/** pg-boss 10 sends only to a queue that exists: a source's queues are made the first time work is sent to them. */
const madeQueues = new WeakMap<PgBoss, Set<string>>();
export async function ensureQueue(boss: PgBoss, name: string): Promise<void> {
  let made = madeQueues.get(boss);
  if (!made) madeQueues.set(boss, (made = new Set()));
  if (made.has(name)) return;
  await boss.createQueue(name); // does nothing for a queue that exists
  made.add(name);
}

export type QueuedJobData = { jobId: string };

let sender: Promise<PgBoss> | undefined;

async function openQueue(options: { supervise: boolean }): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: await getCatalogUrl(), schema: JOB_QUEUE_SCHEMA, max: 2,
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

/**
 * Which of `names` have work waiting, oldest first: one query for all of a worker's queues, so an idle worker serving
 * many sources asks once per poll, not once per queue, and no queue starves behind busier ones. It reads pg-boss's job
 * table as pg-boss's own fetch does (pg-boss 10: states before 'active' are waiting; `start_after` delays a retry).
 */
export async function queuesWithWork(boss: PgBoss, queues: { names: string[]; prefix?: string }): Promise<string[]> {
  const { rows } = await boss.getDb().executeSql(
    `SELECT name FROM ${JOB_QUEUE_SCHEMA}.job WHERE (name = ANY($1::text[]) OR ($2::text IS NOT NULL AND starts_with(name, $2::text)))
       AND state < 'active' AND start_after < now() GROUP BY name ORDER BY min(created_on)`,
    [queues.names, queues.prefix ?? null],
  );
  return (rows as { name: string }[]).map((row) => row.name);
}
