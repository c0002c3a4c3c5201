'use server';

import { revalidatePath } from 'next/cache';
import { createAction } from '@/lib/actions/create-action';
import { getJobSender } from '@/lib/jobs/queue';
import { callWorker } from '@/lib/jobs/worker-calls';
import { queueJob } from '@/lib/services/jobs/queue-job';
import { queueScheduledRun } from '@/lib/services/jobs/queue-scheduled-run';
import { removeScheduledJob, saveScheduledJob } from '@/lib/services/jobs/scheduled-jobs';
import { ZJobName, ZPrune, ZScheduledJobForm } from '@/lib/validation/schedules';
import { recordAudit } from '@/lib/catalog/audit';
import { AppError } from '@/lib/errors';

export const saveScheduledJobAction = createAction('save-scheduled-job', ZScheduledJobForm, 'manage', async (input, { user, db }) => {
  const job = await saveScheduledJob(db, { ...input, source: input.source || null, rpoHours: input.rpoHours ?? null, verifyOutdatedAfterDays: input.verifyOutdatedAfterDays ?? null });
  await recordAudit(db, { actor: user.username, action: 'schedule.add', target: job.name, detail: { kind: job.kind, schedule: job.schedule, timeZone: job.timeZone } });
  revalidatePath('/schedules');
  return { name: job.name, nextRunAt: job.nextRunAt };
});

export const removeScheduledJobAction = createAction('remove-scheduled-job', ZJobName, 'manage', async ({ name }, { user, db }) => {
  await removeScheduledJob(db, name);
  await recordAudit(db, { actor: user.username, action: 'schedule.remove', target: name });
  revalidatePath('/schedules');
  return null;
});

export const runScheduledJobNowAction = createAction('run-scheduled-job', ZJobName, 'backup', async ({ name }, { user, db }) => {
  const job = await db.scheduledJob.findUnique({ where: { name } });
  if (!job) throw new AppError('NOT_FOUND', { message: `no scheduled job named '${name}'` });
  const { job: run, alreadyQueued } = await queueScheduledRun(db, await getJobSender(), job, { actor: user.username, why: 'request' });
  revalidatePath('/schedules');
  return { jobId: run.id, alreadyQueued };
});

export const previewPruneAction = createAction('preview-prune', ZPrune, 'read', async (input) => callWorker('prune-preview', input));

export const pruneAction = createAction('prune', ZPrune, 'manage', async (input, { user, db }) => {
  const { job, alreadyQueued } = await queueJob(db, await getJobSender(), {
    kind: 'prune', target: { retention: input.retention, timeZone: input.timeZone, ...(input.source ? { pruneSource: input.source } : {}), ...(input.vms?.length ? { vms: input.vms } : {}) },
    label: 'Prune and collect garbage', actor: user.username, audit: { action: 'prune.request', target: input.vms?.join(', ') || 'all VMs' },
  });
  return { jobId: job.id, alreadyQueued };
});
