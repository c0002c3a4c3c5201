import type { RestorePlan,RestoreTarget } from '../../engine/restore/plan';
import type { TApprovalPolicy } from '../../validation/restores';

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

export function approvalReasons(plan: RestorePlan, policy: TApprovalPolicy): string[] {
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

export function toPlanView(plan: RestorePlan, policy: TApprovalPolicy): PlanView {
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
