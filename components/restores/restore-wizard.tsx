'use client';

import { useRouter } from 'next/navigation';
import { useState, useTransition } from 'react';
import { listVmBackupsAction, planRestoreAction, requestRestoreAction } from '@/app/(app)/restores/actions';
import { LocalTime } from '@/components/ui/local-time';
import type { BackupSummary } from '@/lib/services/reports/list-backups';
import type { PlanView } from '@/lib/services/restores/plan-view';
import { formatBytes } from '@/lib/format';
import { PlanDetails } from './plan-view';

type Step = { vm: string; source: string } | undefined;
const box = 'space-y-2 rounded-lg border border-slate-200 bg-white p-4 text-sm';

/** VM → backup image → target → policy → plan → explicit confirmation → request. */
export function RestoreWizard({ vms, allowOverwrite, restoreRoots, initial }: {
  vms: { name: string; source: string }[]; allowOverwrite: boolean;
  /** The folders browser restores may write under (VMDEDUP_RESTORE_ROOTS). */
  restoreRoots: string[];
  initial?: { vm: { vm: string; source: string }; backups: BackupSummary[] };
}) {
  const router = useRouter();
  const [vm, setVm] = useState<Step>(initial?.vm);
  const [backups, setBackups] = useState<BackupSummary[]>(initial?.backups ?? []);
  const [backupId, setBackupId] = useState(initial?.backups[0]?.backupId ?? '');
  const [targetKind, setTargetKind] = useState<'folder' | 'in-place'>('folder');
  // A folder under the first restore root named after the VM, filled in (and kept in step with the VM chosen) until
  // the user types their own: a ready value, not a placeholder that looks like one while Plan stays disabled.
  // Named after the backup too (its time-sorted id's first part): a second restore of the VM gets a folder of its own.
  const suggestedDir = (name: string, backup?: string) => `${restoreRoots[0] ?? '/srv/restores'}/${name}${backup ? `-${backup.slice(0, 16)}` : ''}`;
  const [dir, setDir] = useState(initial ? suggestedDir(initial.vm.vm, initial.backups[0]?.backupId) : '');
  const [dirEdited, setDirEdited] = useState(false);
  const [policy, setPolicy] = useState<'no-overwrite' | 'overwrite'>('no-overwrite');
  const [choice, setChoice] = useState<'reattach' | 'copy'>('reattach');
  const [plan, setPlan] = useState<PlanView>();
  const [confirmed, setConfirmed] = useState(false);
  const [error, setError] = useState<string>();
  const [pending, startTransition] = useTransition();

  const chooseVm = (key: string) => startTransition(async () => {
    const [source, name] = JSON.parse(key) as [string, string];
    setVm({ vm: name, source });
    if (!dirEdited) setDir(suggestedDir(name));
    setPlan(undefined);
    const result = await listVmBackupsAction({ vm: name, source });
    if (!result.ok) return setError(result.error.message);
    setBackups(result.data);
    setBackupId(result.data[0]?.backupId ?? '');
    if (!dirEdited) setDir(suggestedDir(name, result.data[0]?.backupId));
  });
  const input = (withChoice = choice) => ({
    vm: vm!.vm, backupId, policy, choice: withChoice,
    target: targetKind === 'in-place' ? { kind: 'in-place' as const } : { kind: 'folder' as const, dir },
  });
  const makePlan = (withChoice = choice) => startTransition(async () => {
    setError(undefined);
    setConfirmed(false);
    const result = await planRestoreAction(input(withChoice));
    if (!result.ok) { setPlan(undefined); setError(result.error.message); return; }
    setPlan(result.data);
  });
  const submit = () => startTransition(async () => {
    const result = await requestRestoreAction({ ...input(), fingerprint: plan!.fingerprint, confirmed: true });
    if (!result.ok) { setError(result.error.message); setConfirmed(false); return; }
    router.push(`/restores/${result.data.id}`);
  });

  return (
    <div className="space-y-4">
      <h1 className="text-2xl font-semibold">New restore</h1>
      <section className={box} aria-label="1. VM">
        <label className="block font-medium">1. VM
          <select aria-label="VM" defaultValue={initial ? JSON.stringify([initial.vm.source, initial.vm.vm]) : ''} onChange={(e) => chooseVm(e.target.value)} className="ml-2 rounded border border-slate-300 px-2 py-1">
            <option value="" disabled>choose a VM</option>
            {vms.map((v) => <option key={`${v.source}/${v.name}`} value={JSON.stringify([v.source, v.name])}>{v.name} ({v.source})</option>)}
          </select>
        </label>
      </section>
      {vm && (
        <section className={box} aria-label="2. Backup image">
          <span className="font-medium">2. Backup image</span>
          {backups.map((b) => (
            <label key={b.backupId} className="flex items-center gap-2">
              <input type="radio" name="backup" checked={backupId === b.backupId} onChange={() => { setBackupId(b.backupId); if (!dirEdited && vm) setDir(suggestedDir(vm.vm, b.backupId)); setPlan(undefined); }} />
              <LocalTime iso={b.createdAt} /> · {formatBytes(b.logicalBytes)} · {b.disks.length} disks, {b.disks.filter((d) => d.common).length} common ({b.disks.filter((d) => d.common).map((d) => d.path.split('/').pop()).join(', ')}) · <span className="font-mono text-xs">{b.backupId}</span>
            </label>
          ))}
        </section>
      )}
      {vm && backupId && (
        <section className={box} aria-label="3. Target and policy">
          <span className="font-medium">3. Where to, and how</span>
          <label className="flex items-center gap-2"><input type="radio" name="target" checked={targetKind === 'folder'} onChange={() => { setTargetKind('folder'); setPlan(undefined); }} /> Into a new or empty folder on the server
            <input aria-label="Target folder" value={dir} onChange={(e) => { setDir(e.target.value); setDirEdited(true); setPlan(undefined); }} placeholder="a new or empty folder under a restore root" className="ml-2 w-96 rounded border border-slate-300 px-2 py-1" disabled={targetKind !== 'folder'} />
          </label>
          <p className="ml-6 text-xs text-slate-500">Restores from the browser go only under {restoreRoots.join(', ')} (set by the administrator with VMDEDUP_RESTORE_ROOTS).</p>
          <label className="flex items-center gap-2"><input type="radio" name="target" checked={targetKind === 'in-place'} onChange={() => { setTargetKind('in-place'); setPlan(undefined); }} /> Into the original place (the VM must be stopped)</label>
          <label className="block">Policy for common disks
            <select aria-label="Policy" value={policy} onChange={(e) => { setPolicy(e.target.value as typeof policy); setPlan(undefined); }} className="ml-2 rounded border border-slate-300 px-2 py-1">
              <option value="no-overwrite">no-overwrite: never write a common disk (default)</option>
              {allowOverwrite && <option value="overwrite">overwrite: write common disks too</option>}
            </select>
          </label>
          <button type="button" disabled={pending || (targetKind === 'folder' && !dir)} onClick={() => makePlan()} className="rounded bg-slate-900 px-3 py-1.5 text-white disabled:opacity-50">Plan the restore</button>
        </section>
      )}
      {error && <p data-testid="restore-error" role="alert" className="text-sm text-red-700">{error}</p>}
      {plan && (
        <section className={box} aria-label="4. Plan">
          <span className="font-medium">4. The plan (nothing has been written)</span>
          <PlanDetails plan={plan} />
          {plan.drift.length > 0 && plan.policy === 'no-overwrite' && (
            <fieldset className="space-y-1">
              <legend className="font-medium">What to do about the drift</legend>
              <label className="flex items-center gap-2"><input type="radio" name="choice" checked={choice === 'reattach'} onChange={() => { setChoice('reattach'); makePlan('reattach'); }} /> Reattach: restore the other disks and point at the common disk as it is now</label>
              <label className="flex items-center gap-2"><input type="radio" name="choice" checked={choice === 'copy'} onChange={() => { setChoice('copy'); makePlan('copy'); }} /> Copy: restore the backed-up common disk beside the VM and point this VM at it</label>
              <button type="button" onClick={() => { setPlan(undefined); setConfirmed(false); }} className="rounded border border-slate-300 px-2 py-1">Cancel</button>
            </fieldset>
          )}
          {!plan.cannotExecute && (
            <>
              <label className="flex items-start gap-2 rounded border border-slate-300 p-3">
                <input type="checkbox" checked={confirmed} onChange={(e) => setConfirmed(e.target.checked)} aria-label="I confirm" className="mt-1" />
                <span>I confirm: <span data-testid="confirmation">{plan.confirmation}</span></span>
              </label>
              <button type="button" disabled={!confirmed || pending} onClick={submit} className="rounded bg-slate-900 px-3 py-1.5 text-white disabled:opacity-50">
                {plan.approvalReasons.length ? 'Request approval' : 'Restore now'}
              </button>
            </>
          )}
        </section>
      )}
    </div>
  );
}
