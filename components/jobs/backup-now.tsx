'use client';

import { useQueryClient } from '@tanstack/react-query';
import { useState, useTransition } from 'react';
import { requestBackupAction } from '@/app/(app)/backups/actions';
import type { BackupTargets } from '@/lib/services/backups/load-backups-page';

/** "Back up now" for a VM, a source or everything; the job then shows up in the list below with its progress. */
export function BackupNow({ targets }: { targets: BackupTargets }) {
  // Option values are the action's input as JSON: {} (everything), { source } or { source, vm }.
  const [choice, setChoice] = useState('{}');
  const [notice, setNotice] = useState<{ ok: boolean; text: string }>();
  const [pending, startTransition] = useTransition();
  const queryClient = useQueryClient();

  const submit = () => startTransition(async () => {
    const result = await requestBackupAction(JSON.parse(choice) as { source?: string; vm?: string });
    setNotice(result.ok ? { ok: true, text: result.data.alreadyQueued ? 'That backup is already queued or running.' : 'Backup queued.' } : { ok: false, text: result.error.message });
    await queryClient.invalidateQueries({ queryKey: ['jobs'] });
  });

  return (
    <section aria-labelledby="backup-now-heading" className="rounded-lg border border-slate-200 bg-white p-4">
      <h2 id="backup-now-heading" className="mb-3 text-lg font-semibold">Back up now</h2>
      <div className="flex flex-wrap items-center gap-3">
        <label className="text-sm">
          <span className="sr-only">What to back up</span>
          <select aria-label="What to back up" value={choice} onChange={(e) => setChoice(e.target.value)} className="rounded border border-slate-300 px-2 py-1.5">
            <option value="{}">Every VM of every source</option>
            {targets.map((t) => (
              <optgroup key={t.source} label={`Source ${t.source}`}>
                <option value={JSON.stringify({ source: t.source })}>All VMs of {t.source}</option>
                {t.vms.map((vm) => <option key={vm} value={JSON.stringify({ source: t.source, vm })}>{vm}</option>)}
              </optgroup>
            ))}
          </select>
        </label>
        <button type="button" onClick={submit} disabled={pending} className="rounded bg-slate-900 px-3 py-1.5 text-sm text-white disabled:opacity-50">
          {pending ? 'Queueing…' : 'Back up now'}
        </button>
        {notice && <span role="status" className={`text-sm ${notice.ok ? 'text-green-700' : 'text-red-700'}`}>{notice.text}</span>}
      </div>
    </section>
  );
}
