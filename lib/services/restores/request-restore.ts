/**
 * Restores asked for in the browser: plan, confirm, request; an approver decides where the approval policy
 * says so; a worker runs it, checking first that the live state still gives the plan that was confirmed.
 * Every step is audited with the plan as it was.
 */
import type PgBoss from 'pg-boss';
import type { Catalog } from '../../catalog/db';
import { AppError } from '../../errors';
import type { Prisma } from '../../generated/prisma/client';
import type { TRequestRestore } from '../../validation/restores';
import { recordAudit } from '../../catalog/audit';
import { type RestoreRequestView, toRestoreRequestView } from './restore-request-view';
import { getApprovalPolicy } from './get-approval-policy';
import { type RestorePlanner } from './local-restore-planner';
import { startRestore } from './start-restore';

/**
 * Records a confirmed restore request. The plan is made again: if it is not the one the user confirmed
 * (its fingerprint), nothing is recorded and they must review it again. Without a reason for approval the
 * restore is queued at once.
 */
export async function requestRestore(
  db: Catalog, planner: RestorePlanner, queue: PgBoss, options: { actor: string; request: TRequestRestore },
): Promise<RestoreRequestView> {
  const { request } = options;
  const plan = await planner(request);
  if (plan.fingerprint !== request.fingerprint) {
    throw new AppError('CONFLICT', { message: `The live state changed since you reviewed the plan; nothing was requested. Review the new plan: ${plan.message}` });
  }
  if (plan.cannotExecute) throw new AppError('BAD_INPUT', { message: plan.cannotExecute });
  const policy = await getApprovalPolicy(db);
  const image = await db.backupImage.findUnique({ where: { id: request.backupId }, include: { vm: { include: { source: true } } } });
  const created = await db.$transaction(async (tx) => {
    const row = await tx.restoreRequest.create({
      data: {
        vm: plan.vm, source: image?.vm.source.name ?? '', backupId: plan.backupId, target: plan.target, policy: plan.policy, choice: plan.choice,
        status: plan.approvalReasons.length ? 'awaiting-approval' : 'approved', requestedBy: options.actor,
        expiresAt: new Date(Date.now() + policy.expiryHours * 3600_000), plan: plan as unknown as Prisma.InputJsonValue,
        fingerprint: plan.fingerprint, confirmation: plan.confirmation, approvalReasons: plan.approvalReasons,
      },
    });
    await recordAudit(tx, { actor: options.actor, action: 'restore.request', target: plan.vm, detail: { requestId: row.id, confirmation: plan.confirmation, approvalReasons: plan.approvalReasons, plan: plan as unknown as Prisma.InputJsonValue } });
    return row;
  });
  if (created.status === 'approved') return toRestoreRequestView(await startRestore(db, queue, { actor: options.actor, requestId: created.id }));
  return toRestoreRequestView(created);
}
