/**
 * Calls from the web server to a worker, for the few things the web needs answered at once that read disks or
 * the repository (planning a restore, checking a source folder). The web server runs as an unprivileged user
 * with no access to either: it sends a short-lived job on its own queue and waits for the answer a worker
 * returns. Workers serve these beside their long jobs, so a plan is not stuck behind a backup. A call about one
 * source's disks goes to the workers serving that source.
 */
import type PgBoss from 'pg-boss';
import { AppError, type AppErrorCode } from '../errors';
import type { PlanView } from '../services/restores/plan-view';
import type { TPlanRestore } from '../validation/restores';
import type { TAddSource, TEditSource } from '../validation/sources';
import type { TPrune } from '../validation/schedules';
import type { PruneReport } from '../services/maintenance/prune-backups';
import { getCatalog } from '../catalog/db';
import { ANY_LANE, type Lane, callQueueOf, ensureQueue, getJobSender, sourceLane } from './queue';

/** What each call takes and answers. */
export type WorkerCalls = {
  'plan-restore': { input: TPlanRestore; output: PlanView };
  'add-source': { input: { actor: string; source: TAddSource }; output: { id: string; name: string } };
  'edit-source': { input: { actor: string; source: TEditSource }; output: null };
  'prune-preview': { input: TPrune; output: PruneReport };
};
export type WorkerCallName = keyof WorkerCalls;

export type WorkerCallData = { call: WorkerCallName; input: unknown };
/** A call's answer as the worker stores it: expected errors travel as code + message, never as a stack. */
export type WorkerCallAnswer = { ok: true; output: unknown } | { ok: false; code: AppErrorCode; message: string };

/** A worker that takes longer than this to answer is reported, and the call withdrawn (VMDEDUP_WORKER_CALL_TIMEOUT_MS). */
function answerTimeoutMs(): number {
  const value = Number(process.env.VMDEDUP_WORKER_CALL_TIMEOUT_MS);
  return value > 0 ? value : 30_000;
}
const POLL_MS = 50;

export async function callWorker<K extends WorkerCallName>(call: K, input: WorkerCalls[K]['input'], options: { queue?: PgBoss } = {}): Promise<WorkerCalls[K]['output']> {
  const queue = options.queue ?? (await getJobSender());
  const timeout = answerTimeoutMs();
  const lane = await laneOf(call, input);
  const name = callQueueOf(lane);
  await ensureQueue(queue, name);
  const id = await queue.send(name, { call, input } satisfies WorkerCallData, { retryLimit: 0, expireInSeconds: Math.ceil(timeout / 1000) + 30 });
  if (!id) throw new AppError('INTERNAL', { message: `the job queue refused the ${call} call` });
  const deadline = Date.now() + timeout;
  for (let wait = POLL_MS; ; wait = Math.min(wait * 2, 400)) {
    const job = await queue.getJobById(name, id, { includeArchive: true });
    if (job?.state === 'completed') {
      const answer = job.output as WorkerCallAnswer;
      if (answer.ok) return answer.output as WorkerCalls[K]['output'];
      throw new AppError(answer.code, { message: answer.message });
    }
    if (job?.state === 'failed' || job?.state === 'cancelled') {
      const message = (job.output as { message?: string } | null)?.message ?? job.state;
      throw new AppError('UNAVAILABLE', { message: `the worker could not ${describe(call)}: ${message}` });
    }
    if (Date.now() > deadline) {
      await queue.cancel(name, id).catch(() => undefined);
      throw new AppError('UNAVAILABLE', {
        message: lane.kind === 'source'
          ? `no job worker serving source '${lane.source}' answered within ${Math.round(timeout / 1000)} s, so the server could not ${describe(call)}: is one running ('npm run worker', or 'npm run worker -- --sources ${lane.source}' on the host that reaches it)?`
          : `no job worker answered within ${Math.round(timeout / 1000)} s, so the server could not ${describe(call)}: is a worker running ('npm run worker')?`,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

function describe(call: WorkerCallName): string {
  return { 'plan-restore': 'plan the restore', 'add-source': 'check the source folder', 'edit-source': 'check the source folder', 'prune-preview': 'preview the prune' }[call];
}

/** Which workers can answer: those serving the source whose disks or folder the call reads. */
async function laneOf(call: WorkerCallName, input: unknown): Promise<Lane> {
  if (call === 'add-source') return sourceLane((input as WorkerCalls['add-source']['input']).source.name);
  if (call === 'edit-source') {
    // The worker of the source as it is named now (a rename is checked where the source is, not where the new name is).
    const { id, name } = (input as WorkerCalls['edit-source']['input']).source;
    const current = await (await getCatalog()).source.findUnique({ where: { id }, select: { name: true } }).catch(() => null);
    return sourceLane(current?.name ?? name);
  }
  if (call === 'plan-restore') {
    const { backupId } = input as TPlanRestore;
    const image = await (await getCatalog()).backupImage.findUnique({ where: { id: backupId }, select: { vm: { select: { source: { select: { name: true } } } } } });
    return image ? sourceLane(image.vm.source.name) : ANY_LANE; // an unknown backup: any worker says so
  }
  return ANY_LANE;
}
