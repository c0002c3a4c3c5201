/**
 * The worker's side of the web server's calls (lib/jobs/worker-calls.ts): each runs here, where the disks and
 * the repository can be read, on input validated again (the web server is the less trusted side).
 */
import { createSource } from '../services/sources/create-source';
import { editSource } from '../services/sources/edit-source';
import { planRestoreRequest } from '../services/restores/plan-restore-request';
import { type Catalog, getCatalogSql } from '../catalog/db';
import { toAppError } from '../errors';
import type { WorkerCallAnswer, WorkerCallData, WorkerCallName } from '../jobs/worker-calls';
import { openRepository } from '../open-repository';
import { ZPlanRestore } from '../validation/restores';
import { ZAddSource, ZEditSource } from '../validation/sources';
import { ZPrune } from '../validation/schedules';
import { pruneBackups } from '../services/maintenance/prune-backups';
import { z } from 'zod';

const ZActor = z.string().min(1);

const CALLS: Record<WorkerCallName, (db: Catalog, input: unknown) => Promise<unknown>> = {
  async 'plan-restore'(db, input) {
    return planRestoreRequest(db, await getCatalogSql(), await openRepository({ mustExist: true }), ZPlanRestore.parse(input));
  },
  async 'add-source'(db, input) {
    const { actor, source } = z.object({ actor: ZActor, source: ZAddSource }).parse(input);
    return createSource(db, await getCatalogSql(), { actor, source });
  },
  async 'prune-preview'(db, input) {
    const { retention, timeZone, source, vms } = ZPrune.parse(input);
    return pruneBackups(await getCatalogSql(), { repo: await openRepository({ mustExist: true }), policy: retention, timeZone, source, vms, dryRun: true });
  },
  async 'edit-source'(db, input) {
    const { actor, source } = z.object({ actor: ZActor, source: ZEditSource }).parse(input);
    await editSource(db, await getCatalogSql(), { actor, source });
    return null;
  },
};

/** Answers one call; every error becomes an answer the web server shows as it is, or as a logged internal error. */
export async function answerWorkerCall(db: Catalog, data: WorkerCallData): Promise<WorkerCallAnswer> {
  try {
    const call = CALLS[data.call];
    if (!call) return { ok: false, code: 'BAD_INPUT', message: `unknown worker call '${String(data.call)}'` };
    return { ok: true, output: await call(db, data.input) };
  } catch (err) {
    if (err instanceof z.ZodError) return { ok: false, code: 'BAD_INPUT', message: err.issues.map((issue) => issue.message).join('; ') };
    const error = toAppError(err);
    if (error.code === 'INTERNAL') process.stderr.write(`vmdedup: worker call ${data.call} failed: ${(err as Error)?.stack ?? error.message}\n`);
    return { ok: false, code: error.code, message: error.userMessage };
  }
}
