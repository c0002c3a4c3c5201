import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import type { Prisma } from '../../generated/prisma/client';
import type { TDecideRestore } from '../../validation/restores';
import { recordAudit } from '../../catalog/audit';
import { type RestoreRequestView, plannedInputOf, toRestoreRequestView } from './restore-request-view';
import { type RestorePlanner } from './local-restore-planner';
import { startRestore } from './start-restore';
import { expireRestoreRequests } from './expire-restore-requests';

/** An approver's decision. Never the requester's own; never on an expired request. Approval queues the restore. */
export async function decideRestore(
  db: Catalog, planner: RestorePlanner, queue: PgBoss, options: { actor: string; decision: TDecideRestore },
): Promise<RestoreRequestView> {
  const { requestId, approve, note } = options.decision;
  await expireRestoreRequests(db);
  const request = await db.restoreRequest.findUnique({ where: { id: requestId } });
  if (!request) throw new AppError('NOT_FOUND', { message: 'no such restore request' });
  if (request.requestedBy === options.actor) {
    await recordAudit(db, { actor: options.actor, action: 'denied', target: 'decide-restore', detail: { requestId, reason: 'own request' } });
    throw new AppError('FORBIDDEN', { message: 'You cannot approve or reject your own restore request: another approver must decide.' });
  }
  if (request.status !== 'awaiting-approval') throw new AppError('CONFLICT', { message: `This request is ${request.status}: there is nothing to decide.` });
  // The approver decides on the plan as it is now: record both, and whether they differ.
  const live = await planner(plannedInputOf(request))
    .catch((err) => { throw new AppError('CONFLICT', { message: `The plan cannot be made again now: ${(err as Error).message}` }); });
  const changed = live.fingerprint !== request.fingerprint;
  // Approving a plan that is no longer the live one would only queue a restore that stops before writing: the
  // request ends as changed at once (the page does not offer Approve then; this is for a stale page).
  const status = approve ? (changed ? 'changed' : 'approved') : 'rejected';
  const { count } = await db.restoreRequest.updateMany({
    where: { id: requestId, status: 'awaiting-approval' },
    data: {
      status, decidedBy: options.actor, decidedAt: new Date(), decisionNote: note || null,
      ...(status === 'changed' ? { error: `The live state changed since this restore was confirmed; nothing was written. Request it again to review the new plan: ${live.message}` } : {}),
    },
  });
  if (count === 0) {
    const now = await db.restoreRequest.findUniqueOrThrow({ where: { id: requestId }, select: { status: true } });
    throw new AppError('CONFLICT', { message: now.status === 'withdrawn' ? 'The requester withdrew this request meanwhile.' : `Another approver decided this request first (it is ${now.status}).` });
  }
  await recordAudit(db, {
    actor: options.actor, action: status === 'approved' ? 'restore.approve' : status === 'changed' ? 'restore.approve-changed' : 'restore.reject', target: request.vm,
    detail: { requestId, note, liveStateChangedSinceConfirmation: changed, livePlan: live as unknown as Prisma.InputJsonValue },
  });
  if (status !== 'approved') return toRestoreRequestView(await db.restoreRequest.findUniqueOrThrow({ where: { id: requestId } }));
  return toRestoreRequestView(await startRestore(db, queue, { actor: options.actor, requestId }));
}
