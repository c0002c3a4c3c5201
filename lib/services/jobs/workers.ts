/** The catalog's list of running workers: each says what it serves every few seconds (lib/worker/main.ts). */
import os from 'node:os';
import type { Catalog } from '../../catalog/db';
import { type Lane, type ServedSources, servesLane } from '../../jobs/queue';

/** A worker not heard from for this long is taken for dead (it says it is alive every WORKER_BEAT_MS). */
export const WORKER_ALIVE_MS = 60_000;
export const WORKER_BEAT_MS = 10_000;

export type WorkerLanes = 'all' | 'jobs' | 'calls';
export type WorkerView = { name: string; host: string; pid: number; sources: string[] | null; lanes: WorkerLanes; startedAt: string; seenAt: string; alive: boolean };

/** VMDEDUP_WORKER_NAME, or host:pid: unique among the workers of one catalog. */
export function workerName(): string {
  return process.env.VMDEDUP_WORKER_NAME?.trim() || `${os.hostname()}:${process.pid}`;
}

/** A worker's name is taken by another live worker (VMDEDUP_WORKER_NAME given twice). */
export class WorkerNameTaken extends Error {}

/** Says this worker is alive; `first`: at its start, when a live worker of the same name elsewhere is refused. */
export async function announceWorker(db: Catalog, worker: { name: string; served: ServedSources; lanes: WorkerLanes; first?: boolean }): Promise<void> {
  if (worker.first) {
    const other = await db.worker.findUnique({ where: { name: worker.name } });
    if (other && Date.now() - other.seenAt.getTime() < WORKER_ALIVE_MS && (other.host !== os.hostname() || other.pid !== process.pid)) {
      throw new WorkerNameTaken(`a worker named '${worker.name}' is running on ${other.host} (pid ${other.pid}, seen ${Math.round((Date.now() - other.seenAt.getTime()) / 1000)} s ago): give this one another VMDEDUP_WORKER_NAME`);
    }
  }
  const sources = worker.served.every ? undefined : worker.served.names;
  const fields = { host: os.hostname(), pid: process.pid, sources: sources ?? undefined, lanes: worker.lanes, seenAt: new Date() };
  await db.worker.upsert({ where: { name: worker.name }, create: { name: worker.name, ...fields }, update: fields });
}

export async function retireWorker(db: Catalog, name: string): Promise<void> {
  await db.worker.deleteMany({ where: { name } });
}

/** A killed worker's row stays, shown as not heard from, for a day; then it is forgotten. */
export async function forgetDeadWorkers(db: Catalog): Promise<void> {
  await db.worker.deleteMany({ where: { seenAt: { lt: new Date(Date.now() - 24 * 3600_000) } } });
}

export async function listWorkers(db: Catalog): Promise<WorkerView[]> {
  const rows = await db.worker.findMany({ orderBy: { name: 'asc' } });
  const now = Date.now();
  return rows.map((row) => ({
    name: row.name, host: row.host, pid: row.pid, sources: (row.sources as string[] | null) ?? null, lanes: row.lanes as WorkerLanes,
    startedAt: row.startedAt.toISOString(), seenAt: row.seenAt.toISOString(), alive: now - row.seenAt.getTime() < WORKER_ALIVE_MS,
  }));
}

/** Whether a live worker of `workers` takes this lane's jobs (what: 'jobs') or calls. */
export function laneServedBy(workers: WorkerView[], lane: Lane, what: 'jobs' | 'calls'): boolean {
  return workers.some((w) => w.alive && (w.lanes === 'all' || w.lanes === what) && servesLane(w.sources ? { every: false, names: w.sources } : { every: true }, lane));
}

export async function laneIsServed(db: Catalog, lane: Lane, what: 'jobs' | 'calls'): Promise<boolean> {
  return laneServedBy(await listWorkers(db), lane, what);
}

/** A queued job's message while no live worker takes it. */
export function waitingMessage(lane: Lane): string {
  return `waiting for ${laneWaitsFor(lane)}: none is running`;
}

/** How to say who a lane waits for. */
export function laneWaitsFor(lane: Lane): string {
  return lane.kind === 'source' ? `a worker serving source '${lane.source}'` : lane.kind === 'all-sources' ? 'a worker serving every source' : 'a worker';
}
