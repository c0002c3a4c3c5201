'use server';

import { revalidatePath } from 'next/cache';
import { createAction } from '@/lib/actions/create-action';
import { requestBackup } from '@/lib/services/jobs/request-backup';
import { getJobSender } from '@/lib/jobs/queue';
import { ZRequestBackup } from '@/lib/validation/jobs';

export const requestBackupAction = createAction('request-backup', ZRequestBackup, 'backup', async (target, { user, db }) => {
  const { job, alreadyQueued } = await requestBackup(db, await getJobSender(), { actor: user.username, target });
  revalidatePath('/backups');
  return { jobId: job.id, alreadyQueued };
});
