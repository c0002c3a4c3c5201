import { notFound } from 'next/navigation';
import { RestoreRequestDetail } from '@/components/restores/restore-request-detail';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { getJob } from '@/lib/services/jobs/get-job';
import { type JobView } from '@/lib/services/jobs/job-view';
import { getRestoreRequest } from '@/lib/services/restores/get-restore-request';
import { replanRestoreRequest } from '@/lib/services/restores/replan-restore-request';
import { getCatalog } from '@/lib/catalog/db';
import { AppError } from '@/lib/errors';
import { callWorker } from '@/lib/jobs/worker-calls';

export default async function RestoreRequestPage({ params }: { params: Promise<{ id: string }> }) {
  const user = await requireUser();
  const db = await getCatalog();
  const { id } = await params;
  const request = await getRestoreRequest(db, id).catch((err) => {
    if (err instanceof AppError && err.code === 'NOT_FOUND') notFound();
    throw err;
  });
  // The approver decides on the plan as the live state gives it now, shown beside the confirmed one.
  const live = request.status === 'awaiting-approval' ? await replanRestoreRequest((input) => callWorker('plan-restore', input), request) : undefined;
  const job: JobView | undefined = request.jobId ? await getJob(db, request.jobId).catch(() => undefined) : undefined;
  const mayDecide = can(user.role, 'approve-restore') && request.requestedBy !== user.username;
  return <RestoreRequestDetail request={request} live={live} job={job} mayDecide={mayDecide} isRequester={request.requestedBy === user.username} canApprove={can(user.role, 'approve-restore')} canAudit={can(user.role, 'audit')} />;
}
