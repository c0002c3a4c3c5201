import { LocalTime } from '@/components/ui/local-time';
import { formatBytes, restoreActionWords } from '@/lib/format';
import type { PlanView } from '@/lib/services/restores/plan-view';


const show = (value: unknown) => (value === null || value === undefined ? 'nothing' : typeof value === 'object' ? JSON.stringify(value) : String(value));

type DriftRow = PlanView['drift'][number];

/** What changed, in words: sizes, times and paths rather than version tokens (kept in the cell's title for support). */
function DriftDetails({ d }: { d: DriftRow }) {
  const { recorded: was, current: now } = d;
  const tokens = [was.version, now.version].filter(Boolean).map(String).join(' → ');
  if (d.kind === 'modified' && 'size' in was) {
    return (
      <div title={tokens ? `version ${tokens}` : undefined}>
        <div>changed {typeof now.changedAt === 'string' ? <>on <LocalTime iso={now.changedAt} /></> : 'since'} (backed up <LocalTime iso={String(was.backedUpAt)} />)</div>
        <div>size {formatBytes(Number(was.size))} → {formatBytes(Number(now.size))}</div>
      </div>
    );
  }
  if (d.kind === 'modified' && 'error' in now) return <div>cannot be read now: {String(now.error)}</div>;
  if (d.kind === 'retargeted') {
    return now.path === null
      ? <div>slot {String(was.slot)} is no longer in the VM&apos;s config</div>
      : <div>slot {String(was.slot)} points at <span className="font-mono text-xs">{String(now.path)}</span> now (was <span className="font-mono text-xs">{String(was.path)}</span>)</div>;
  }
  if (d.kind === 'missing') return <div>the file is gone from <span className="font-mono text-xs">{String(was.path)}</span></div>;
  if (d.kind === 'parent-changed' && 'parent' in was) {
    return <div>parent <span className="font-mono text-xs">{show(was.parent)}</span> → <span className="font-mono text-xs">{show(now.parent)}</span></div>;
  }
  // Anything else (a VMDK parent CID, an older plan's fields) as it is.
  return <div className="font-mono text-xs">{Object.keys({ ...was, ...now }).map((key) => <div key={key}>{key}: {show(was[key])} → {show(now[key])}</div>)}</div>;
}

/** A restore plan for a person: the message, what drifted (old → new), and what happens to each disk. */
export function PlanDetails({ plan, testId = 'plan' }: { plan: PlanView; testId?: string }) {
  return (
    <div className="space-y-4" data-testid={testId}>
      <p data-testid={`${testId}-message`} className={`rounded-lg border p-4 text-sm ${plan.status === 'needs-confirmation' ? 'border-amber-300 bg-amber-50' : 'border-slate-200 bg-white'}`}>{plan.message}</p>
      {plan.cannotExecute && <p className="text-sm text-red-700" data-testid={`${testId}-cannot`}>{plan.cannotExecute}</p>}
      {plan.drift.length > 0 && (
        <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm" aria-label="Drift since the backup">
          <thead className="bg-slate-100 text-left text-slate-600"><tr><th className="px-3 py-2">Common disk</th><th className="px-3 py-2">Kind</th><th className="px-3 py-2">What changed</th><th className="px-3 py-2">Used by now</th></tr></thead>
          <tbody>
            {plan.drift.map((d, i) => (
              <tr key={i} className="border-t border-slate-100 align-top">
                <td className="px-3 py-2 font-mono text-xs">{d.disk}</td>
                <td className="px-3 py-2">{d.kind}</td>
                <td className="px-3 py-2" data-testid="drift-details"><DriftDetails d={d} /></td>
                <td className="px-3 py-2">{d.sharedWith.join(', ') || 'no other VM'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm" aria-label="What happens to each disk">
        <thead className="bg-slate-100 text-left text-slate-600"><tr><th className="px-3 py-2">Disk</th><th className="px-3 py-2">Action</th><th className="px-3 py-2">Written to</th><th className="px-3 py-2">The VM will point at</th><th className="px-3 py-2">Shared with now</th></tr></thead>
        <tbody>
          {plan.disks.map((d) => (
            <tr key={d.path} className="border-t border-slate-100" aria-label={`disk ${d.path}`}>
              <td className="px-3 py-2 font-mono text-xs">{d.path}{d.common && <span className="ml-2 rounded bg-violet-100 px-1.5 text-violet-800">common</span>}</td>
              <td className="px-3 py-2" data-action={d.action}>{restoreActionWords(d.action)}</td>
              <td className="px-3 py-2 font-mono text-xs" data-testid="written-to">{d.files?.length ? d.files.map((file) => <div key={file}>{file}</div>) : 'nothing'}</td>
              <td className="px-3 py-2 font-mono text-xs">{d.pointTo}</td>
              <td className="px-3 py-2">{d.sharedWith.join(', ') || 'no other VM'}{(d.sharedAtBackup?.length ?? 0) > 0 && <div className="text-xs text-slate-500">at the backup: {d.sharedAtBackup.join(', ')}</div>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {plan.configDestination && <p className="text-sm">The VM&apos;s config is written to <span className="font-mono text-xs" data-testid={`${testId}-config`}>{plan.configDestination}</span>.</p>}
      {plan.approvalReasons.length > 0 && <p className="text-sm" data-testid={`${testId}-approval`}>Needs approval by an approver: {plan.approvalReasons.join('; ')}.</p>}
    </div>
  );
}
