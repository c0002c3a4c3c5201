'use client';

import Link from 'next/link';
import { useState, useTransition } from 'react';
import { requestBackupAction } from '@/app/(app)/backups/actions';

/** "Back up this VM" on a VM's page: queues a backup of this VM alone (only it is read); its progress is on Backups & jobs. */
export function BackUpVm({ source, vm }: { source: string; vm: string }) {
  const [notice, setNotice] = useState<{ ok: boolean; text: string }>();
  const [pending, startTransition] = useTransition();
  const submit = () => startTransition(async () => {
    const result = await requestBackupAction({ source, vm });
    setNotice(result.ok ? { ok: true, text: result.data.alreadyQueued ? 'A backup of this VM is already queued or running.' : 'Backup queued.' } : { ok: false, text: result.error.message });
  });
  return (
    <span className="flex items-center gap-2">
      <button type="button" onClick={submit} disabled={pending} className="rounded border border-slate-400 px-3 py-1.5 text-sm disabled:opacity-50">{pending ? 'Queueing…' : 'Back up this VM'}</button>
      {notice && <span role="status" className={`text-sm ${notice.ok ? 'text-green-700' : 'text-red-700'}`}>{notice.text} {notice.ok && <Link href="/backups" className="text-blue-700 hover:underline">See its progress</Link>}</span>}
    </span>
  );
}
