'use server';

import { revalidatePath } from 'next/cache';
import { createAction } from '@/lib/actions/create-action';
import { requestScan } from '@/lib/services/jobs/request-scan';
import { deleteSource } from '@/lib/services/sources/delete-source';
import { getCatalogSql } from '@/lib/catalog/db';
import { getJobSender } from '@/lib/jobs/queue';
import { callWorker } from '@/lib/jobs/worker-calls';
import { ZAddSource, ZEditSource, ZScanSource, ZSourceId } from '@/lib/validation/sources';

export const addSourceAction = createAction('add-source', ZAddSource, 'manage', async (source, { user, db }) => {
  // The folder is checked (resolved, readable) by a worker: the web server may not read it.
  const created = await callWorker('add-source', { actor: user.username, source });
  // A new source is scanned at once, so its VMs show up without another click.
  await requestScan(db, await getJobSender(), { actor: user.username, source: created.name });
  revalidatePath('/sources');
  return created;
});

export const editSourceAction = createAction('edit-source', ZEditSource, 'manage', async (source, { user, db }) => {
  await callWorker('edit-source', { actor: user.username, source });
  revalidatePath('/sources');
  return null;
});

export const removeSourceAction = createAction('remove-source', ZSourceId, 'manage', async ({ id }, { user, db }) => {
  await deleteSource(db, await getCatalogSql(), { actor: user.username, id });
  revalidatePath('/sources');
  return null;
});

export const scanSourceAction = createAction('scan-source', ZScanSource, 'backup', async ({ source }, { user, db }) => {
  const { job, alreadyQueued } = await requestScan(db, await getJobSender(), { actor: user.username, source });
  revalidatePath('/sources');
  return { jobId: job.id, alreadyQueued };
});
