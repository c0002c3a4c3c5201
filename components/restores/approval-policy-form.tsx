'use client';

import { useRouter } from 'next/navigation';
import { useState, useTransition } from 'react';
import { setApprovalPolicyAction } from '@/app/(app)/restores/actions';
import type { ApprovalPolicyView } from '@/lib/services/restores/get-approval-policy';

const FLAGS = [
  ['inPlace', 'Restores into the original place need approval'],
  ['overwriteCommon', 'Restores that overwrite a common disk need approval'],
  ['drift', 'Restores with drift since the backup need approval'],
  ['allowOverwrite', 'The overwrite policy may be requested at all'],
] as const;

export function ApprovalPolicyForm({ policy, canManage }: { policy: ApprovalPolicyView; canManage: boolean }) {
  const router = useRouter();
  const [value, setValue] = useState(policy);
  const [notice, setNotice] = useState<{ ok: boolean; text: string }>();
  const [pending, startTransition] = useTransition();
  return (
    <form aria-label="Approval policy" className="space-y-3 rounded-lg border border-slate-200 bg-white p-4 text-sm"
      onSubmit={(e) => {
        e.preventDefault();
        startTransition(async () => {
          const { inPlace, overwriteCommon, drift, allowOverwrite, expiryHours } = value;
          const result = await setApprovalPolicyAction({ inPlace, overwriteCommon, drift, allowOverwrite, expiryHours });
          setNotice(result.ok ? { ok: true, text: 'Approval policy saved.' } : { ok: false, text: result.error.message });
          if (result.ok) router.refresh();
        });
      }}>
      <h2 className="text-lg font-semibold">Approval policy</h2>
      <p className="text-slate-600">A restore that needs approval runs only once a user with the approver role, other than the one who asked, approves it.</p>
      {FLAGS.map(([key, label]) => (
        <label key={key} className="flex items-center gap-2">
          <input type="checkbox" checked={value[key]} disabled={!canManage} onChange={(e) => setValue({ ...value, [key]: e.target.checked })} /> {label}
        </label>
      ))}
      <label className="flex items-center gap-2">Requests expire after
        <input type="number" min={1} max={720} value={value.expiryHours} disabled={!canManage} onChange={(e) => setValue({ ...value, expiryHours: Number(e.target.value) })} className="w-20 rounded border border-slate-300 px-2 py-1" /> hours
      </label>
      <p className="text-xs text-slate-500">Last changed by {policy.updatedBy}.</p>
      {canManage && <button type="submit" disabled={pending} className="rounded bg-slate-900 px-3 py-1.5 text-white">Save policy</button>}
      {notice && <p role="status" className={notice.ok ? 'text-green-700' : 'text-red-700'}>{notice.text}</p>}
    </form>
  );
}
