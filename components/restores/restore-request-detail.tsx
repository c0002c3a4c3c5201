'use client';

import Link from 'next/link';
import { useRouter } from 'next/navigation';
import { useEffect, useState, useTransition } from 'react';
import { decideRestoreAction, withdrawRestoreAction } from '@/app/(app)/restores/actions';
import { JobProgress } from '@/components/jobs/job-list';
import { isActiveJob, useJobProgress } from '@/components/jobs/use-jobs';
import { LocalTime } from '@/components/ui/local-time';
import { restoreActionWords } from '@/lib/format';
import type { JobView } from '@/lib/services/jobs/job-view';
import type { PlanView } from '@/lib/services/restores/plan-view';
import type { RestoreRequestView } from '@/lib/services/restores/restore-request-view';
import { PlanDetails } from './plan-view';
import { STATUS_STYLE } from './restore-list';

type RestoredDisk = { path: string; common: boolean; action: string; verified: boolean };

/** How a decided request's decision reads (an approval of a plan the live state had left ends as changed). */
const DECISION_WORDS: Record<string, string> = { rejected: 'Rejected', withdrawn: 'Withdrawn', changed: 'Not run: the live state had changed (seen when it was approved or when it was to run); approved' };

export function RestoreRequestDetail({ request, live, job, mayDecide, isRequester, canApprove, canAudit = false }: {
  request: RestoreRequestView; live?: PlanView | { error: string }; job?: JobView; mayDecide: boolean; isRequester: boolean; canApprove: boolean; canAudit?: boolean;
}) {
  const router = useRouter();
  const [note, setNote] = useState('');
  const [error, setError] = useState<string>();
  const [pending, startTransition] = useTransition();

  const decide = (approve: boolean) => startTransition(async () => {
    const result = await decideRestoreAction({ requestId: request.id, approve, note });
    if (!result.ok) return setError(result.error.message);
    router.refresh();
  });
  const withdraw = () => startTransition(async () => {
    const result = await withdrawRestoreAction({ requestId: request.id });
    if (!result.ok) return setError(result.error.message);
    router.refresh();
  });
  const liveChanged = live && !('error' in live) && live.fingerprint !== request.plan.fingerprint;
  // Approve runs only the plan that was confirmed: not offered when the live state gives another one, or none.
  const approvable = live !== undefined && !('error' in live) && !liveChanged;
  const result = request.result as { disks?: RestoredDisk[]; configPath?: string } | null;

  return (
    <div className="space-y-6">
      <div className="flex flex-wrap items-center gap-3">
        <h1 className="text-2xl font-semibold">Restore {request.vm}</h1>
        <span data-testid="request-status" className={`rounded px-2 py-0.5 text-sm ${STATUS_STYLE[request.status] ?? ''}`}>{request.status}</span>
      </div>
      <p className="text-sm text-slate-600">
        Requested by {request.requestedBy} on <LocalTime iso={request.createdAt} />; backup <span className="font-mono text-xs">{request.backupId}</span>;
        {' '}{request.target.kind === 'in-place' ? 'into the original place' : <>into <span className="font-mono text-xs">{request.target.dir}</span></>}; policy {request.policy}, choice {request.choice}.
        {request.status === 'awaiting-approval' && <> Expires <LocalTime iso={request.expiresAt} />.</>}
        {canAudit && <> <Link href={`/audit?request=${request.id}`} className="text-blue-700 hover:underline">Its audit trail</Link></>}
      </p>
      <section aria-label="Confirmed" className="rounded-lg border border-slate-200 bg-white p-4 text-sm">
        <h2 className="font-semibold">What {request.requestedBy} confirmed</h2>
        <p data-testid="confirmed-sentence">{request.confirmation}</p>
        {request.approvalReasons.length > 0 && <p className="mt-1">Needs approval because {request.approvalReasons.join('; ')}.</p>}
        {request.decidedBy && <p className="mt-1" data-testid="decision">{DECISION_WORDS[request.status] ?? 'Approved'} by {request.decidedBy}{request.decidedAt && <> on <LocalTime iso={request.decidedAt} /></>}{request.decisionNote ? `: ${request.decisionNote}` : ''}.</p>}
      </section>

      {request.status === 'awaiting-approval' && (
        <section aria-label="Decision" className="space-y-3 rounded-lg border border-amber-300 bg-amber-50 p-4 text-sm">
          <h2 className="font-semibold">The plan as the live state gives it now</h2>
          {live && 'error' in live ? <p className="text-red-700">{live.error}</p> : live && <PlanDetails plan={live} testId="live-plan" />}
          {liveChanged && <p className="font-medium text-red-700" data-testid="live-changed">The live state changed since {request.requestedBy} confirmed: this request cannot be approved as it is. Reject it, and {request.requestedBy} can request the restore again to confirm the plan above.</p>}
          {mayDecide ? (
            <div className="space-y-2">
              <label className="block">Note (optional)<textarea aria-label="Note" value={note} onChange={(e) => setNote(e.target.value)} className="mt-1 block w-full rounded border border-slate-300 p-2" /></label>
              <div className="flex gap-2">
                <button type="button" disabled={pending || !approvable} onClick={() => decide(true)} className="rounded bg-green-700 px-3 py-1.5 text-white disabled:cursor-not-allowed disabled:opacity-50">Approve and restore</button>
                <button type="button" disabled={pending} onClick={() => decide(false)} className="rounded border border-slate-400 px-3 py-1.5">Reject</button>
              </div>
            </div>
          ) : (
            <p data-testid="waiting">{isRequester && canApprove ? 'You asked for this restore: another approver must decide.' : 'Waiting for an approver.'}</p>
          )}
          {isRequester && (
            <button type="button" disabled={pending} onClick={withdraw} className="rounded border border-slate-400 px-3 py-1.5">Withdraw request</button>
          )}
          {error && <p className="text-red-700" data-testid="decide-error">{error}</p>}
        </section>
      )}

      {job && <RestoreJob key={job.id} job={job} outcomePending={request.status === 'approved' || request.status === 'running'} />}
      {request.error && (
        <div className="rounded-lg border border-red-300 bg-red-50 p-4 text-sm text-red-800">
          <p data-testid="request-error">{request.error}</p>
          {request.status === 'changed' && <Link href="/restores/new" className="mt-2 inline-block text-blue-700 hover:underline">Plan the restore again</Link>}
        </div>
      )}

      {result?.disks && (
        <section aria-label="Result">
          <h2 className="mb-2 font-semibold">Result: every disk</h2>
          <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
            <thead className="bg-slate-100 text-left text-slate-600"><tr><th className="px-3 py-2">Disk the VM points at</th><th className="px-3 py-2">Action</th><th className="px-3 py-2">Verified</th></tr></thead>
            <tbody>
              {result.disks.map((d) => (
                <tr key={d.path} className="border-t border-slate-100" aria-label={`restored ${d.path}`}>
                  <td className="px-3 py-2 font-mono text-xs">{d.path}</td><td className="px-3 py-2" data-action={d.action}>{restoreActionWords(d.action)}</td>
                  <td className="px-3 py-2">{d.verified ? 'every block checked against its hash' : 'not written (kept as it is)'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {result.configPath && <p className="mt-2 text-sm">VM config: <span className="font-mono text-xs" data-testid="config-path">{result.configPath}</span></p>}
        </section>
      )}

      <details className="text-sm"><summary className="cursor-pointer">The plan as confirmed</summary><div className="mt-2"><PlanDetails plan={request.plan} testId="confirmed-plan" /></div></details>
    </div>
  );
}

/**
 * The restore job's live progress. Once the job has ended while the page still shows the request without its
 * outcome, the page (status, result) is read again, every second a few times at most: the page may have been
 * rendered between the worker writing the outcome and the job's end.
 */
function RestoreJob({ job, outcomePending }: { job: JobView; outcomePending: boolean }) {
  const router = useRouter();
  const { data: current } = useJobProgress(job);
  const ended = !isActiveJob(current);
  useEffect(() => {
    if (!ended || !outcomePending) return;
    router.refresh();
    let tries = 1;
    const timer = setInterval(() => { router.refresh(); if (++tries >= 5) clearInterval(timer); }, 1000);
    return () => clearInterval(timer);
  }, [ended, outcomePending, router]);
  return (
    <section aria-label="Restore job" className="space-y-2 rounded-lg border border-slate-200 bg-white p-4 text-sm">
      <h2 className="font-semibold">Restore job: <span data-testid="job-state">{current.state}</span></h2>
      <JobProgress job={current} />
      {!isActiveJob(current) && current.message && <p>{current.message}</p>}
    </section>
  );
}
