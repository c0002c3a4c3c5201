'use server';

import { revalidatePath } from 'next/cache';
import { z } from 'zod';
import { createAction } from '@/lib/actions/create-action';
import { listBackups } from '@/lib/services/reports/list-backups';
import { decideRestore } from '@/lib/services/restores/decide-restore';
import { requestRestore } from '@/lib/services/restores/request-restore';
import { setApprovalPolicy } from '@/lib/services/restores/set-approval-policy';
import { withdrawRestore } from '@/lib/services/restores/withdraw-restore';
import { getJobSender } from '@/lib/jobs/queue';
import { callWorker } from '@/lib/jobs/worker-calls';
import { ZApprovalPolicy, ZDecideRestore, ZPlanRestore, ZRequestRestore, ZWithdrawRestore } from '@/lib/validation/restores';

export const listVmBackupsAction = createAction('list-vm-backups', z.object({ vm: z.string().min(1), source: z.string().min(1) }), 'request-restore', async ({ vm, source }, { db }) =>
  (await listBackups(db, { vm })).filter((b) => b.source === source));

// Planning reads the sources and the repository: a worker does it (the web server may read neither).
const planInWorker = (input: Parameters<typeof callWorker<'plan-restore'>>[1]) => callWorker('plan-restore', input);

export const planRestoreAction = createAction('plan-restore', ZPlanRestore, 'request-restore', async (input) => planInWorker(input));

export const requestRestoreAction = createAction('request-restore', ZRequestRestore, 'request-restore', async (request, { user, db }) => {
  const created = await requestRestore(db, planInWorker, await getJobSender(), { actor: user.username, request });
  revalidatePath('/restores');
  return { id: created.id, status: created.status };
});

export const decideRestoreAction = createAction('decide-restore', ZDecideRestore, 'approve-restore', async (decision, { user, db }) => {
  const decided = await decideRestore(db, planInWorker, await getJobSender(), { actor: user.username, decision });
  revalidatePath('/restores');
  return { status: decided.status };
});

// The requester's own: the service refuses anyone else's request.
export const withdrawRestoreAction = createAction('withdraw-restore', ZWithdrawRestore, 'request-restore', async ({ requestId }, { user, db }) => {
  const withdrawn = await withdrawRestore(db, { actor: user.username, requestId });
  revalidatePath('/restores');
  return { status: withdrawn.status };
});

export const setApprovalPolicyAction = createAction('set-approval-policy', ZApprovalPolicy, 'manage', async (policy, { user, db }) => {
  await setApprovalPolicy(db, { actor: user.username, policy });
  revalidatePath('/restores');
  return null;
});
