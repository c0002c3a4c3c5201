import type { RestoreChoice,RestorePolicy,RestoreTarget } from '../../engine/restore/plan';
import type { Prisma } from '../../generated/prisma/client';
import type { TPlanRestore } from '../../validation/restores';
import { type PlanView } from './plan-view';

export type RestoreRequestView = {
  id: string; vm: string; source: string; backupId: string; target: RestoreTarget; policy: string; choice: string;
  status: string; requestedBy: string; createdAt: string; expiresAt: string; plan: PlanView; confirmation: string;
  approvalReasons: string[]; decidedBy: string | null; decidedAt: string | null; decisionNote: string | null;
  jobId: string | null; result: unknown; error: string | null;
};

/** What a stored request asks for, as planning takes it (the decision, the approver's view and the run plan it again). */
export function plannedInputOf(request: { vm: string; backupId: string; target: unknown; policy: string; choice: string }): TPlanRestore {
  return { vm: request.vm, backupId: request.backupId, target: request.target as RestoreTarget, policy: request.policy as RestorePolicy, choice: request.choice as RestoreChoice };
}

export function toRestoreRequestView(row: Prisma.RestoreRequestGetPayload<object>): RestoreRequestView {
  return {
    id: row.id, vm: row.vm, source: row.source, backupId: row.backupId, target: row.target as RestoreTarget, policy: row.policy, choice: row.choice,
    status: row.status, requestedBy: row.requestedBy, createdAt: row.createdAt.toISOString(), expiresAt: row.expiresAt.toISOString(),
    plan: row.plan as unknown as PlanView, confirmation: row.confirmation, approvalReasons: row.approvalReasons as string[],
    decidedBy: row.decidedBy, decidedAt: row.decidedAt?.toISOString() ?? null, decisionNote: row.decisionNote,
    jobId: row.jobId, result: row.result, error: row.error,
  };
}
