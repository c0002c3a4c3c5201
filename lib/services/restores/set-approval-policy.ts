import type { Catalog } from '../../catalog/db';
import type { TApprovalPolicy } from '../../validation/restores';
import { recordAudit } from '../../catalog/audit';
import { type ApprovalPolicyView, getApprovalPolicy } from './get-approval-policy';

export async function setApprovalPolicy(db: Catalog, options: { actor: string; policy: TApprovalPolicy }): Promise<void> {
  const before = await getApprovalPolicy(db);
  await db.$transaction(async (tx) => {
    await tx.approvalPolicy.update({ where: { id: 'default' }, data: { ...options.policy, updatedBy: options.actor, updatedAt: new Date() } });
    await recordAudit(tx, { actor: options.actor, action: 'policy.update', target: 'restore approval', detail: { before: stripMeta(before), after: options.policy } });
  });
}

const stripMeta = ({ updatedBy: _by, updatedAt: _at, ...policy }: ApprovalPolicyView) => policy;
