/**
 * Restores asked for in the browser: plan, confirm, request; an approver decides where the approval policy
 * says so; a worker runs it, checking first that the live state still gives the plan that was confirmed.
 * Every step is audited with the plan as it was.
 */
import path from 'node:path';
import type PgBoss from 'pg-boss';
import { restoreRoots } from '../config';
import type { Catalog, CatalogSql } from '../db';
import type { Repository } from '../engine/repository/repository';
import type { RestoreChoice, RestorePlan, RestorePolicy, RestoreTarget } from '../engine/restore/plan';
import { isInside, resolvedRoot } from '../engine/containment';
import { AppError } from '../errors';
import type { Prisma } from '../generated/prisma/client';
import type { TApprovalPolicy, TDecideRestore, TPlanRestore, TRequestRestore } from '../validation/restores';
import { recordAudit } from './audit';
import { queueJob } from './jobs';
import { planVmRestore } from './plan-vm-restore';

export type ApprovalPolicyView = TApprovalPolicy & { updatedBy: string; updatedAt: string };

export type PlannedDiskView = {
  path: string; common: boolean; action: string; destination: string | null; files: string[]; pointTo: string;
  /** Other VMs that use the disk now (live), and at the backup. */
  sharedWith: string[]; sharedAtBackup: string[];
};
export type PlanView = {
  vm: string; backupId: string; backupCreatedAt: string; policy: string; choice: string; target: RestoreTarget;
  status: 'planned' | 'needs-confirmation'; message: string; fingerprint: string; cannotExecute: string | null;
  drift: { disk: string; kind: string; recorded: Record<string, unknown>; current: Record<string, unknown>; sharedWith: string[]; sharedAtBackup: string[] }[];
  disks: PlannedDiskView[];
  /** Where the VM's config is written. */
  configDestination: string;
  /** Why this restore needs an approver under the current policy ([] when it does not). */
  approvalReasons: string[];
  /** What the requester agrees to by confirming, in one sentence. */
  confirmation: string;
};

export type RestoreRequestView = {
  id: string; vm: string; source: string; backupId: string; target: RestoreTarget; policy: string; choice: string;
  status: string; requestedBy: string; createdAt: string; expiresAt: string; plan: PlanView; confirmation: string;
  approvalReasons: string[]; decidedBy: string | null; decidedAt: string | null; decisionNote: string | null;
  jobId: string | null; result: unknown; error: string | null;
};

export async function getApprovalPolicy(db: Catalog): Promise<ApprovalPolicyView> {
  // The row is made once, with the schema's defaults; later reads write nothing.
  const row = (await db.approvalPolicy.findUnique({ where: { id: 'default' } })) ?? (await db.approvalPolicy.upsert({ where: { id: 'default' }, create: {}, update: {} }));
  return { inPlace: row.inPlace, overwriteCommon: row.overwriteCommon, drift: row.drift, allowOverwrite: row.allowOverwrite, expiryHours: row.expiryHours, updatedBy: row.updatedBy, updatedAt: row.updatedAt.toISOString() };
}

export async function setApprovalPolicy(db: Catalog, options: { actor: string; policy: TApprovalPolicy }): Promise<void> {
  const before = await getApprovalPolicy(db);
  await db.$transaction(async (tx) => {
    await tx.approvalPolicy.update({ where: { id: 'default' }, data: { ...options.policy, updatedBy: options.actor, updatedAt: new Date() } });
    await recordAudit(tx, { actor: options.actor, action: 'policy.update', target: 'restore approval', detail: { before: stripMeta(before), after: options.policy } });
  });
}

const stripMeta = ({ updatedBy: _by, updatedAt: _at, ...policy }: ApprovalPolicyView) => policy;

function approvalReasons(plan: RestorePlan, policy: TApprovalPolicy): string[] {
  const reasons: string[] = [];
  if (policy.inPlace && plan.target.kind === 'in-place') reasons.push('it restores into the original place');
  if (policy.overwriteCommon && plan.disks.some((d) => d.action === 'overwritten')) reasons.push('it overwrites a common disk');
  if (policy.drift && plan.drift.length > 0) reasons.push('a common disk drifted since the backup');
  return reasons;
}

function confirmationOf(plan: RestorePlan): string {
  const where = plan.target.kind === 'in-place' ? 'in place' : `into ${plan.target.dir}`;
  const counts = new Map<string, number>();
  for (const d of plan.disks) counts.set(d.action, (counts.get(d.action) ?? 0) + 1);
  const actions = [...counts].map(([action, n]) => `${n} disk${n === 1 ? '' : 's'} ${action.replace('-', ' ')}`).join(', ');
  return `Restore ${plan.vm} from its backup ${plan.backupId} ${where} under policy ${plan.policy}${plan.drift.length ? `, choice ${plan.choice}` : ''}: ${actions}.`;
}

function toPlanView(plan: RestorePlan, policy: TApprovalPolicy): PlanView {
  const drift = plan.drift.map((d) => ({ ...d }));
  return {
    vm: plan.vm, backupId: plan.backupId, backupCreatedAt: plan.backupCreatedAt, policy: plan.policy, choice: plan.choice, target: plan.target,
    status: plan.status, message: plan.message, fingerprint: plan.fingerprint, cannotExecute: plan.cannotExecute ?? null, drift,
    disks: plan.disks.map((d) => ({
      path: d.entry.path, common: d.common, action: d.action, destination: d.destination ?? null, files: d.files?.map((f) => f.destination) ?? [],
      pointTo: d.pointTo, sharedWith: d.sharedWith, sharedAtBackup: d.sharedAtBackup,
    })),
    configDestination: plan.configDestination,
    approvalReasons: approvalReasons(plan, policy),
    confirmation: confirmationOf(plan),
  };
}

/**
 * Makes the plan of a browser restore. Planning reads every source and the repository, so the web server (which
 * may read neither) asks a worker (lib/jobs/worker-calls.ts); the worker and tests plan here (planRestoreRequest).
 */
export type RestorePlanner = (input: TPlanRestore) => Promise<PlanView>;

export function localRestorePlanner(db: Catalog, sql: CatalogSql, repo: Repository): RestorePlanner {
  return (input) => planRestoreRequest(db, sql, repo, input);
}

/**
 * A browser restore into a folder goes only under a restore root (VMDEDUP_RESTORE_ROOTS, default
 * VMDEDUP_HOME/restores), checked on the paths as the filesystem resolves them: a symlink inside a root that
 * leads out of it is refused. In-place restores go where the VM is (the planner confines those).
 */
export async function checkRestoreRoots(target: RestoreTarget): Promise<void> {
  if (target.kind !== 'folder') return;
  const roots = restoreRoots();
  const given = path.resolve(target.dir);
  const refuse = (why = '') => new AppError('FORBIDDEN', { message: `restores from the browser may write only under ${roots.join(', ')} (VMDEDUP_RESTORE_ROOTS)${why}` });
  // Outside every root as written: refused without looking at the filesystem (planning probes nothing there).
  const candidates = roots.filter((root) => isInside(root, given));
  if (candidates.length === 0) throw refuse();
  const dir = await resolvedRoot(given);
  for (const root of candidates) {
    if (isInside(await resolvedRoot(root), dir)) return;
  }
  throw refuse(`; ${target.dir} leads out of them through a symlink (it resolves to ${dir})`);
}

/** Plans a restore for the wizard: writes nothing. */
export async function planRestoreRequest(db: Catalog, sql: CatalogSql, repo: Repository, input: TPlanRestore): Promise<PlanView> {
  await checkRestoreRoots(input.target);
  const policy = await getApprovalPolicy(db);
  if (input.policy === 'overwrite' && !policy.allowOverwrite) throw new AppError('FORBIDDEN', { message: 'the approval policy does not allow the overwrite policy from the browser' });
  return toPlanView(await planVmRestore(sql, repo, { ...input, confined: true }), policy);
}

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
  if (created.status === 'approved') return toView(await startRestore(db, queue, { actor: options.actor, requestId: created.id }));
  return toView(created);
}

/** What a stored request asks for, as planning takes it (the decision, the approver's view and the run plan it again). */
export function plannedInputOf(request: { vm: string; backupId: string; target: unknown; policy: string; choice: string }): TPlanRestore {
  return { vm: request.vm, backupId: request.backupId, target: request.target as RestoreTarget, policy: request.policy as RestorePolicy, choice: request.choice as RestoreChoice };
}

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
  const { count } = await db.restoreRequest.updateMany({
    where: { id: requestId, status: 'awaiting-approval' },
    data: { status: approve ? 'approved' : 'rejected', decidedBy: options.actor, decidedAt: new Date(), decisionNote: note || null },
  });
  if (count === 0) throw new AppError('CONFLICT', { message: 'Another approver decided this request first.' });
  await recordAudit(db, {
    actor: options.actor, action: approve ? 'restore.approve' : 'restore.reject', target: request.vm,
    detail: { requestId, note, liveStateChangedSinceConfirmation: changed, livePlan: live as unknown as Prisma.InputJsonValue },
  });
  if (!approve) return toView(await db.restoreRequest.findUniqueOrThrow({ where: { id: requestId } }));
  return toView(await startRestore(db, queue, { actor: options.actor, requestId }));
}

async function startRestore(db: Catalog, queue: PgBoss, options: { actor: string; requestId: string }) {
  const request = await db.restoreRequest.findUniqueOrThrow({ where: { id: options.requestId } });
  const target = request.target as RestoreTarget;
  const { job } = await queueJob(db, queue, {
    kind: 'restore', target: { requestId: request.id }, label: `Restore ${request.vm}${target.kind === 'in-place' ? ' in place' : ` into ${target.dir}`}`,
    actor: options.actor, audit: { action: 'restore.queue', target: request.vm },
  });
  return db.restoreRequest.update({ where: { id: request.id }, data: { jobId: job.id } });
}

/** Requests nobody decided on in time expire (checked whenever requests are read or decided). */
export async function expireRestoreRequests(db: Catalog): Promise<void> {
  const expired = await db.restoreRequest.findMany({ where: { status: 'awaiting-approval', expiresAt: { lt: new Date() } }, select: { id: true, vm: true } });
  for (const request of expired) {
    const { count } = await db.restoreRequest.updateMany({ where: { id: request.id, status: 'awaiting-approval' }, data: { status: 'expired' } });
    if (count) await recordAudit(db, { actor: 'system', action: 'restore.expire', target: request.vm, detail: { requestId: request.id } });
  }
}

export async function listRestoreRequests(db: Catalog, options: { limit?: number } = {}): Promise<RestoreRequestView[]> {
  await expireRestoreRequests(db);
  const rows = await db.restoreRequest.findMany({ orderBy: { createdAt: 'desc' }, take: options.limit ?? 100 });
  return rows.map(toView);
}

export async function getRestoreRequest(db: Catalog, id: string): Promise<RestoreRequestView> {
  await expireRestoreRequests(db);
  const row = await db.restoreRequest.findUnique({ where: { id } });
  if (!row) throw new AppError('NOT_FOUND', { message: 'no such restore request' });
  return toView(row);
}

/** The plan of a pending request as the live state gives it now (what the approver sees beside the confirmed one). */
export async function replanRestoreRequest(planner: RestorePlanner, request: RestoreRequestView): Promise<PlanView | { error: string }> {
  try {
    return await planner(plannedInputOf(request));
  } catch (err) {
    return { error: (err as Error).message };
  }
}

export async function countPendingApprovals(db: Catalog): Promise<number> {
  return db.restoreRequest.count({ where: { status: 'awaiting-approval', expiresAt: { gt: new Date() } } });
}

function toView(row: Prisma.RestoreRequestGetPayload<object>): RestoreRequestView {
  return {
    id: row.id, vm: row.vm, source: row.source, backupId: row.backupId, target: row.target as RestoreTarget, policy: row.policy, choice: row.choice,
    status: row.status, requestedBy: row.requestedBy, createdAt: row.createdAt.toISOString(), expiresAt: row.expiresAt.toISOString(),
    plan: row.plan as unknown as PlanView, confirmation: row.confirmation, approvalReasons: row.approvalReasons as string[],
    decidedBy: row.decidedBy, decidedAt: row.decidedAt?.toISOString() ?? null, decisionNote: row.decisionNote,
    jobId: row.jobId, result: row.result, error: row.error,
  };
}
