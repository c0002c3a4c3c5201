import Link from 'next/link';
import { LocalTime } from '@/components/ui/local-time';
import type { ApprovalPolicyView } from '@/lib/services/restores/get-approval-policy';
import type { RestoreRequestView } from '@/lib/services/restores/restore-request-view';
import { ApprovalPolicyForm } from './approval-policy-form';

export const STATUS_STYLE: Record<string, string> = {
  'awaiting-approval': 'bg-amber-100 text-amber-800', approved: 'bg-blue-100 text-blue-800', running: 'bg-blue-100 text-blue-800',
  restored: 'bg-green-100 text-green-800', rejected: 'bg-slate-200 text-slate-700', expired: 'bg-slate-200 text-slate-700',
  changed: 'bg-red-100 text-red-800', failed: 'bg-red-100 text-red-800', withdrawn: 'bg-slate-200 text-slate-700',
};

export function RestoreList({ requests, policy, canRequest, canManage }: { requests: RestoreRequestView[]; policy: ApprovalPolicyView; canRequest: boolean; canManage: boolean }) {
  return (
    <div className="space-y-8">
      <div className="flex items-center gap-4">
        <h1 className="text-2xl font-semibold">Restores</h1>
        {canRequest && <Link href="/restores/new" className="rounded bg-slate-900 px-3 py-1.5 text-sm text-white">New restore</Link>}
      </div>
      {requests.length === 0 ? <p className="text-slate-500">No restore requests yet.</p> : (
        <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
          <thead className="bg-slate-100 text-left text-slate-600"><tr><th className="px-3 py-2">Requested</th><th className="px-3 py-2">VM</th><th className="px-3 py-2">Where</th><th className="px-3 py-2">By</th><th className="px-3 py-2">Status</th><th className="px-3 py-2">Decided by</th></tr></thead>
          <tbody>
            {requests.map((r) => (
              <tr key={r.id} className="border-t border-slate-100" aria-label={`restore request ${r.id}`}>
                <td className="px-3 py-2"><Link href={`/restores/${r.id}`} className="text-blue-700 hover:underline"><LocalTime iso={r.createdAt} /></Link></td>
                <td className="px-3 py-2">{r.vm}</td>
                <td className="px-3 py-2">{r.target.kind === 'in-place' ? 'in place' : <span className="font-mono text-xs">{r.target.dir}</span>}</td>
                <td className="px-3 py-2">{r.requestedBy}</td>
                <td className="px-3 py-2"><span className={`rounded px-2 py-0.5 text-xs ${STATUS_STYLE[r.status] ?? ''}`}>{r.status}</span></td>
                <td className="px-3 py-2">{r.decidedBy ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ApprovalPolicyForm policy={policy} canManage={canManage} />
    </div>
  );
}
