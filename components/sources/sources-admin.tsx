'use client';

import { useQueryClient } from '@tanstack/react-query';
import { useRouter } from 'next/navigation';
import { useState, useTransition } from 'react';
import { addSourceAction, editSourceAction, removeSourceAction, scanSourceAction } from '@/app/(app)/sources/actions';
import { JobList } from '@/components/jobs/job-list';
import type { ActionResult } from '@/lib/actions/create-action';
import type { JobView } from '@/lib/services/jobs/job-view';
import type { SourceView } from '@/lib/services/sources/list-source-views';
import { LocalTime } from '@/components/ui/local-time';

type Notice = { ok: boolean; text: string };
const input = 'mt-1 w-full rounded border border-slate-300 px-2 py-1';

export function SourcesAdmin({ sources, jobs, canManage, canScan }: { sources: SourceView[]; jobs: JobView[]; canManage: boolean; canScan: boolean }) {
  const router = useRouter();
  const queryClient = useQueryClient();
  const [notice, setNotice] = useState<Notice>();
  const [editing, setEditing] = useState<string>();
  const [pending, startTransition] = useTransition();
  const run = (work: () => Promise<ActionResult<unknown>>, success: string, after?: () => void) => startTransition(async () => {
    const result = await work();
    setNotice(result.ok ? { ok: true, text: success } : { ok: false, text: result.error.message });
    if (!result.ok) return;
    after?.();
    router.refresh();
    await queryClient.invalidateQueries({ queryKey: ['jobs'] });
  });
  const fields = (form: HTMLFormElement) => {
    const data = new FormData(form);
    const storage = String(data.get('storage') ?? '').split('\n').map((line) => line.trim()).filter(Boolean);
    const uri = String(data.get('uri') ?? '').trim();
    return { name: String(data.get('name')), type: String(data.get('type')) as 'libvirt' | 'vmware', path: String(data.get('path') ?? '').trim(), storage, ...(uri ? { uri } : {}) };
  };

  return (
    <div className="space-y-8">
      <h1 className="text-2xl font-semibold">Sources</h1>
      {notice && <p role="status" className={`text-sm ${notice.ok ? 'text-green-700' : 'text-red-700'}`}>{notice.text}</p>}
      {sources.length === 0 && <p className="text-slate-500">No sources yet{canManage ? ': add the folder of a libvirt host or a VMware datastore below.' : '.'}</p>}
      <ul className="space-y-4">
        {sources.map((source) => (
          <li key={source.id} aria-label={`source ${source.name}`} className="rounded-lg border border-slate-200 bg-white p-4">
            {editing === source.id ? (
              <form aria-label={`Edit source ${source.name}`} className="grid gap-3 md:grid-cols-4"
                onSubmit={(e) => { e.preventDefault(); const f = fields(e.currentTarget); run(() => editSourceAction({ id: source.id, ...f }), `Source ${f.name} saved.`, () => setEditing(undefined)); }}>
                <SourceFields source={source} />
                <div className="flex items-end gap-2">
                  <button type="submit" disabled={pending} className="rounded bg-slate-900 px-3 py-1.5 text-sm text-white">Save</button>
                  <button type="button" onClick={() => setEditing(undefined)} className="rounded border border-slate-300 px-3 py-1.5 text-sm">Cancel</button>
                </div>
              </form>
            ) : (
              <div className="flex flex-wrap items-center gap-x-4 gap-y-2">
                <span className="font-medium">{source.name}</span>
                <span className="rounded bg-slate-100 px-2 py-0.5 text-xs">{source.type}</span>
                <span className="font-mono text-xs text-slate-600">{source.uri ? `${source.uri} (libvirt connection)` : source.path}</span>
                {source.storage.length > 0 && <span className="font-mono text-xs text-slate-600" data-testid="source-storage">disks also in {source.storage.join(', ')}</span>}
                <span className="text-sm" data-testid="source-vms">{source.vms} VMs, {source.vmsProtected} protected</span>
                <span className="text-xs text-slate-500">{source.scannedAt ? <>scanned <LocalTime iso={source.scannedAt} /></> : 'not scanned yet'}</span>
                <span className="ml-auto flex gap-2">
                  {canScan && <button type="button" disabled={pending} onClick={() => run(() => scanSourceAction({ source: source.name }), `Scan of ${source.name} queued.`)} className="rounded border border-slate-300 px-2 py-1 text-sm">Scan now</button>}
                  {canManage && <button type="button" onClick={() => setEditing(source.id)} className="rounded border border-slate-300 px-2 py-1 text-sm">Edit</button>}
                  {canManage && (
                    <button type="button" disabled={pending} className="rounded border border-red-300 px-2 py-1 text-sm text-red-700"
                      onClick={() => { if (window.confirm(`Remove source ${source.name}?`)) run(() => removeSourceAction({ id: source.id }), `Source ${source.name} removed.`); }}>
                      Remove
                    </button>
                  )}
                </span>
              </div>
            )}
            {source.problems.length > 0 && (
              <details className="mt-3" open={source.problems.length <= 5}>
                <summary className="cursor-pointer text-sm text-amber-800">{source.problems.length} problem{source.problems.length === 1 ? '' : 's'} in the last scan</summary>
                <ul className="mt-2 space-y-1 text-sm" aria-label={`problems of ${source.name}`}>
                  {source.problems.map((p, i) => <li key={i}><span className="font-mono text-xs">{p.file}</span>: {p.message}</li>)}
                </ul>
              </details>
            )}
          </li>
        ))}
      </ul>

      {canManage && (
        <form aria-label="Add a source" className="space-y-3 rounded-lg border border-slate-200 bg-white p-4"
          onSubmit={(e) => {
            e.preventDefault();
            const target = e.currentTarget;
            const f = fields(target);
            run(() => addSourceAction(f), `Source ${f.name} added; scanning it now.`, () => target.reset());
          }}>
          <h2 className="text-lg font-semibold">Add a source</h2>
          <div className="grid gap-3 md:grid-cols-3"><SourceFields /></div>
          <button type="submit" disabled={pending} className="rounded bg-slate-900 px-3 py-1.5 text-sm text-white disabled:opacity-50">Add source</button>
        </form>
      )}

      <JobList initialJobs={jobs} />
    </div>
  );
}

function SourceFields({ source }: { source?: SourceView }) {
  return (
    <>
      <label className="text-sm">Name<input name="name" required defaultValue={source?.name} className={input} /></label>
      <label className="text-sm">Type
        <select name="type" defaultValue={source?.type ?? 'libvirt'} className={input}>
          <option value="libvirt">libvirt (domain XML folder)</option>
          <option value="vmware">VMware (datastore with .vmx and .vmdk)</option>
        </select>
      </label>
      <label className="text-sm">Config folder on the server<input name="path" defaultValue={source?.uri ? '' : source?.path} placeholder="e.g. /srv/vms/configs" className={input} /></label>
      <label className="text-sm">or libvirt connection<input name="uri" defaultValue={source?.uri ?? ''} placeholder="e.g. qemu:///system" className={input} /></label>
      <label className="text-sm md:col-span-full">Storage folders (one per line; disks outside the config folder are read only from these)
        <textarea name="storage" rows={2} defaultValue={source?.storage.join('\n')} placeholder="e.g. /var/lib/libvirt/images" className={`${input} font-mono text-xs`} />
      </label>
    </>
  );
}
