'use client';

import { useRouter } from 'next/navigation';
import { useState, useTransition } from 'react';
import { previewPruneAction, pruneAction, removeScheduledJobAction, runScheduledJobNowAction, saveScheduledJobAction } from '@/app/(app)/schedules/actions';
import { JobList } from '@/components/jobs/job-list';
import { LocalTime } from '@/components/ui/local-time';
import type { RetentionPolicy } from '@/lib/engine/gc/retention';
import { formatBytes, formatTime, parseByteSize } from '@/lib/format';
import type { JobView } from '@/lib/services/jobs/job-view';
import type { ScheduledJobView } from '@/lib/services/jobs/scheduled-jobs';
import type { PruneReport } from '@/lib/services/maintenance/prune-backups';

const KEEPS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
const input = 'rounded border border-slate-300 px-2 py-1 text-sm';
const button = 'rounded bg-slate-900 px-3 py-1.5 text-sm text-white disabled:opacity-50';

function describeRetention(r: RetentionPolicy): string {
  const parts = KEEPS.filter((k) => r[k]).map((k) => `${k} ${r[k]}`);
  if (r.withinMs) parts.push(`within ${Math.round(r.withinMs / 86_400_000)} days`);
  return parts.join(', ') || 'everything';
}

/** Keep-… fields of a form, as a retention policy (empty fields are no rule). */
function retentionFrom(form: FormData): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const k of KEEPS) {
    const value = String(form.get(`keep-${k}`) ?? '').trim();
    if (value) policy[k] = Number(value);
  }
  const within = String(form.get('keep-within-days') ?? '').trim();
  if (within) policy.withinMs = Number(within) * 86_400_000;
  return policy;
}

function KeepFields({ prefix }: { prefix: string }) {
  return (
    <div className="flex flex-wrap gap-3">
      {KEEPS.map((k) => (
        <label key={k} className="text-sm">Keep {k}{' '}
          <input name={`keep-${k}`} aria-label={`${prefix} keep ${k}`} inputMode="numeric" className={`${input} w-16`} />
        </label>
      ))}
      <label className="text-sm">Keep within (days){' '}<input name="keep-within-days" aria-label={`${prefix} keep within days`} inputMode="numeric" className={`${input} w-16`} /></label>
    </div>
  );
}

export function SchedulesPage({ jobs, runs, sources, canManage, canRun }: { jobs: ScheduledJobView[]; runs: JobView[]; sources: string[]; canManage: boolean; canRun: boolean }) {
  const router = useRouter();
  const [pending, startTransition] = useTransition();
  const [notice, setNotice] = useState<{ ok: boolean; text: string }>();
  const [kind, setKind] = useState<'backup' | 'gc' | 'verify'>('backup');
  const [preview, setPreview] = useState<{ report: PruneReport; request: { retention: RetentionPolicy; timeZone: string; source?: string; vms?: string[] } }>();
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const tell = (ok: boolean, text: string) => setNotice({ ok, text });

  const addJob = (form: FormData) => startTransition(async () => {
    const patterns = String(form.get('vms') ?? '').split(/[\s,]+/).filter(Boolean);
    const rpo = String(form.get('rpo') ?? '').trim();
    const outdated = String(form.get('outdated') ?? '').trim();
    const text = (name: string) => String(form.get(name) ?? '').trim();
    const sizes: Record<string, number> = {};
    for (const [field, key] of [['budget', 'verifyBudgetBytes'], ['rate', 'verifyMaxBytesPerSecond']] as const) {
      if (!text(field)) continue;
      const bytes = parseByteSize(text(field).replace(/\/s$/i, ''));
      if (!bytes) return tell(false, `${field === 'budget' ? 'Budget' : 'Max rate'}: a size such as 500M, 20G or 1T, not '${text(field)}'.`);
      sizes[key] = bytes;
    }
    const result = await saveScheduledJobAction({
      name: String(form.get('name')), kind, schedule: String(form.get('schedule')), timeZone: String(form.get('timeZone') || zone),
      source: String(form.get('source') ?? '') || undefined, vmPatterns: patterns, retention: kind === 'backup' ? retentionFrom(form) : {},
      ...(rpo ? { rpoHours: Number(rpo) } : {}), ...(outdated ? { verifyOutdatedAfterDays: Number(outdated) } : {}),
      ...(text('retries') ? { retries: Number(text('retries')) } : {}), ...(text('retryDelay') ? { retryDelayMinutes: Number(text('retryDelay')) } : {}),
      ...(kind === 'verify' ? { ...sizes, ...(text('drills') ? { drillVms: Number(text('drills')) } : {}) } : {}),
    });
    if (result.ok) tell(true, `Job ${result.data.name} added; next run ${result.data.nextRunAt ? formatTime(result.data.nextRunAt) : 'never (disabled)'}.`);
    else tell(false, result.error.message);
    router.refresh();
  });

  const runNow = (name: string) => startTransition(async () => {
    const result = await runScheduledJobNowAction({ name });
    tell(result.ok, result.ok ? (result.data.alreadyQueued ? `A run of ${name} is already queued or running.` : `${name} queued.`) : result.error.message);
    router.refresh();
  });

  const remove = (name: string) => startTransition(async () => {
    const result = await removeScheduledJobAction({ name });
    tell(result.ok, result.ok ? `Job ${name} removed (its backups stay).` : result.error.message);
    router.refresh();
  });

  const previewPrune = (form: FormData) => startTransition(async () => {
    const vms = String(form.get('vms') ?? '').split(/[\s,]+/).filter(Boolean);
    const source = String(form.get('source') ?? '');
    const request = { retention: retentionFrom(form), timeZone: zone, ...(source ? { source } : {}), ...(vms.length ? { vms } : {}) };
    const result = await previewPruneAction(request);
    if (result.ok) {
      setPreview({ report: result.data, request });
      setNotice(undefined);
    } else tell(false, result.error.message);
  });

  const prune = () => startTransition(async () => {
    if (!preview) return;
    const result = await pruneAction(preview.request);
    tell(result.ok, result.ok ? 'Prune queued: the backups no rule keeps are removed, then garbage is collected; the job below shows what was freed.' : result.error.message);
    if (result.ok) setPreview(undefined);
    router.refresh();
  });

  // The preview as a calendar: one row per VM, its backups by day, each kept (with the rules that kept it) or removed.
  const byVm = new Map<string, { day: string; backupId: string; kept: boolean; reasons: string[] }[]>();
  if (preview) {
    const day = (id: string) => `${id.slice(0, 4)}-${id.slice(4, 6)}-${id.slice(6, 8)}`;
    for (const k of preview.report.kept) byVm.set(`${k.source}/${k.vm}`, [...(byVm.get(`${k.source}/${k.vm}`) ?? []), { day: day(k.backupId), backupId: k.backupId, kept: true, reasons: k.reasons }]);
    for (const r of preview.report.removed) byVm.set(`${r.source}/${r.vm}`, [...(byVm.get(`${r.source}/${r.vm}`) ?? []), { day: day(r.backupId), backupId: r.backupId, kept: false, reasons: [] }]);
  }

  return (
    <div className="space-y-8">
      <h1 className="text-2xl font-semibold">Schedules &amp; retention</h1>
      {notice && <p role="status" className={`text-sm ${notice.ok ? 'text-green-700' : 'text-red-700'}`}>{notice.text}</p>}

      <section aria-labelledby="scheduled-heading">
        <h2 id="scheduled-heading" className="mb-3 text-lg font-semibold">Scheduled jobs</h2>
        {jobs.length === 0 ? <p className="text-slate-500">No scheduled jobs yet: nothing runs unless someone starts it.</p> : (
          <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm" aria-label="Scheduled jobs">
            <thead className="bg-slate-100 text-left text-slate-600">
              <tr><th className="px-3 py-2">Name</th><th className="px-3 py-2">Kind</th><th className="px-3 py-2">Schedule</th><th className="px-3 py-2">What</th><th className="px-3 py-2">Keeps</th><th className="px-3 py-2">Next run</th><th className="px-3 py-2">Last success</th><th className="px-3 py-2" /></tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.name} className="border-t border-slate-100" data-testid={`schedule-${j.name}`}>
                  <td className="px-3 py-2 font-medium">{j.name}</td>
                  <td className="px-3 py-2">{j.kind}</td>
                  <td className="px-3 py-2 font-mono text-xs">{j.schedule} <span className="font-sans text-slate-500">({j.timeZone})</span></td>
                  <td className="px-3 py-2">{j.kind === 'gc' ? 'the repository' : j.kind === 'sync' ? `copy to ${j.syncTo}` : `${j.source ?? 'all sources'}${j.vmPatterns.length ? `: ${j.vmPatterns.join(' ')}` : ''}`}{j.rpoHours ? `, RPO ${j.rpoHours} h` : ''}
                    {j.kind === 'verify' && (j.verifyOutdatedAfterDays != null || j.verifyBudgetBytes || j.verifyMaxBytesPerSecond || j.drillVms > 0) && (
                      <div className="text-xs text-slate-500">{[
                        j.verifyOutdatedAfterDays != null ? `each backup every ${j.verifyOutdatedAfterDays} days` : '',
                        j.verifyBudgetBytes ? `budget ${formatBytes(j.verifyBudgetBytes)} per run` : '',
                        j.verifyMaxBytesPerSecond ? `at most ${formatBytes(j.verifyMaxBytesPerSecond)}/s` : '',
                        j.drillVms > 0 ? `${j.drillVms} restore drill${j.drillVms === 1 ? '' : 's'} per run` : '',
                      ].filter(Boolean).join(' · ')}</div>
                    )}
                    <div className="text-xs text-slate-500">{j.retries ? `retried ${j.retries}× from ${j.retryDelayMinutes} min, doubling` : 'not retried'}</div>
                  </td>
                  <td className="px-3 py-2">{j.kind === 'backup' ? describeRetention(j.retention) : '–'}</td>
                  <td className="px-3 py-2">{j.enabled ? (j.nextRunAt ? <LocalTime iso={j.nextRunAt} /> : '–') : 'disabled'}</td>
                  <td className="px-3 py-2">{j.lastSuccessAt ? <LocalTime iso={j.lastSuccessAt} /> : 'never'}</td>
                  <td className="space-x-2 px-3 py-2 text-right">
                    {canRun && <button type="button" disabled={pending} onClick={() => runNow(j.name)} className="text-blue-700 hover:underline">Run now</button>}
                    {canManage && <button type="button" disabled={pending} onClick={() => remove(j.name)} className="text-red-700 hover:underline">Remove</button>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      {canManage && (
        <section aria-labelledby="add-heading" className="rounded-lg border border-slate-200 bg-white p-4">
          <h2 id="add-heading" className="mb-3 text-lg font-semibold">Add a scheduled job</h2>
          {/* onSubmit, not action: a refused job keeps what was typed (a form action resets the fields). */}
          <form onSubmit={(e) => { e.preventDefault(); addJob(new FormData(e.currentTarget)); }} className="space-y-3">
            <div className="flex flex-wrap gap-3">
              <label className="text-sm">Name <input name="name" required aria-label="Job name" className={input} /></label>
              <label className="text-sm">Kind{' '}
                <select aria-label="Job kind" value={kind} onChange={(e) => setKind(e.target.value as typeof kind)} className={input}>
                  <option value="backup">backup</option><option value="gc">garbage collection</option><option value="verify">verify</option>
                </select>
              </label>
              <label className="text-sm">Schedule (cron){' '}<input name="schedule" required defaultValue="0 2 * * *" aria-label="Schedule" className={`${input} font-mono`} /></label>
              <label className="text-sm">Time zone <input name="timeZone" defaultValue={zone} aria-label="Time zone" className={input} /></label>
            </div>
            {kind !== 'gc' && (
              <div className="flex flex-wrap gap-3">
                <label className="text-sm">Source{' '}
                  <select name="source" aria-label="Source" className={input}><option value="">all sources</option>{sources.map((s) => <option key={s} value={s}>{s}</option>)}</select>
                </label>
                <label className="text-sm">VMs (patterns, * and ?){' '}<input name="vms" placeholder="every VM" aria-label="VM patterns" className={input} /></label>
                {kind === 'backup' && <label className="text-sm">RPO (hours){' '}<input name="rpo" inputMode="numeric" aria-label="RPO hours" className={`${input} w-20`} /></label>}
                {kind === 'verify' && <label className="text-sm">Only backups not verified for (days){' '}<input name="outdated" inputMode="numeric" aria-label="Not verified for days" className={`${input} w-20`} /></label>}
              </div>
            )}
            {kind === 'verify' && (
              <div className="flex flex-wrap gap-3">
                <label className="text-sm">Budget per run{' '}<input name="budget" placeholder="e.g. 500G" aria-label="Budget per run" className={`${input} w-24`} /></label>
                <label className="text-sm">Max rate{' '}<input name="rate" placeholder="e.g. 200M/s" aria-label="Max rate" className={`${input} w-24`} /></label>
                <label className="text-sm">Restore drills per run (VMs){' '}<input name="drills" inputMode="numeric" placeholder="0" aria-label="Restore drills per run" className={`${input} w-16`} /></label>
              </div>
            )}
            <div className="flex flex-wrap gap-3">
              <label className="text-sm">Retries{' '}<input name="retries" inputMode="numeric" placeholder="2" aria-label="Retries" className={`${input} w-16`} /></label>
              <label className="text-sm">First retry after (minutes, doubling){' '}<input name="retryDelay" inputMode="numeric" placeholder="10" aria-label="Retry delay minutes" className={`${input} w-16`} /></label>
            </div>
            {kind === 'backup' && <KeepFields prefix="Job" />}
            <button type="submit" disabled={pending} className={button}>Add job</button>
          </form>
        </section>
      )}

      <section aria-labelledby="retention-heading" className="rounded-lg border border-slate-200 bg-white p-4">
        <h2 id="retention-heading" className="mb-1 text-lg font-semibold">Prune</h2>
        <p className="mb-3 text-sm text-slate-600">Rules as restic&apos;s: each keeps on its own; a period without a backup does not count; protected backups always stay. A common disk stays while any retained backup of any VM needs it.</p>
        <form onSubmit={(e) => { e.preventDefault(); previewPrune(new FormData(e.currentTarget)); }} className="space-y-3">
          <KeepFields prefix="Prune" />
          <div className="flex flex-wrap gap-3">
            <label className="text-sm">Source{' '}
              <select name="source" aria-label="Prune source" className={input}><option value="">all sources</option>{sources.map((s) => <option key={s} value={s}>{s}</option>)}</select>
            </label>
            <label className="text-sm">VMs (names, all when empty){' '}<input name="vms" aria-label="Prune VMs" className={input} /></label>
          </div>
          <div><button type="submit" disabled={pending} className={button}>Preview</button></div>
        </form>
        {preview && (
          <div className="mt-4 space-y-3" data-testid="prune-preview">
            <p className="text-sm">
              <strong>{preview.report.kept.length}</strong> backups kept, <strong>{preview.report.removed.length}</strong> removed;{' '}
              <strong data-testid="prune-frees">{formatBytes(preview.report.freedBytes)}</strong> freed once garbage is collected.
            </p>
            {[...byVm.entries()].map(([vm, backups]) => (
              <div key={vm}>
                <h3 className="text-sm font-medium">{vm}</h3>
                <ul className="mt-1 flex flex-wrap gap-2">
                  {backups.sort((a, b) => (a.backupId < b.backupId ? 1 : -1)).map((b) => (
                    <li key={b.backupId} title={b.kept ? `kept: ${b.reasons.join(', ')}` : 'removed'} className={`rounded px-2 py-1 text-xs ${b.kept ? 'bg-green-100 text-green-800' : 'bg-red-100 text-red-800 line-through'}`}>
                      {b.day} {b.backupId.slice(9, 15)}{b.kept ? ` · ${b.reasons.join(', ')}` : ''}
                    </li>
                  ))}
                </ul>
              </div>
            ))}
            {canManage && preview.report.removed.length > 0 && (
              <button type="button" onClick={prune} disabled={pending} className="rounded bg-red-700 px-3 py-1.5 text-sm text-white disabled:opacity-50">
                Remove {preview.report.removed.length} backups and collect garbage
              </button>
            )}
          </div>
        )}
      </section>

      {/* Scheduled runs start without this browser: the list looks every few seconds. */}
      <JobList initialJobs={runs} idlePollMs={5000} />
    </div>
  );
}
