import type { Catalog,CatalogSql } from '../../catalog/db';
import type { Repository } from '../../engine/repository/repository';
import { AppError } from '../../errors';
import type { TPlanRestore } from '../../validation/restores';
import { planVmRestore } from './plan-vm-restore';
import { type PlanView, toPlanView } from './plan-view';
import { getApprovalPolicy } from './get-approval-policy';
import { checkRestoreRoots } from './check-restore-roots';

/** Plans a restore for the wizard: writes nothing. */
export async function planRestoreRequest(db: Catalog, sql: CatalogSql, repo: Repository, input: TPlanRestore): Promise<PlanView> {
  await checkRestoreRoots(input.target);
  const policy = await getApprovalPolicy(db);
  if (input.policy === 'overwrite' && !policy.allowOverwrite) throw new AppError('FORBIDDEN', { message: 'the approval policy does not allow the overwrite policy from the browser' });
  return toPlanView(await planVmRestore(sql, repo, { ...input, confined: true }), policy);
}
