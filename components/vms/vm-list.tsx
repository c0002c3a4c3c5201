'use client';

import Link from 'next/link';
import { useMemo, useState } from 'react';
import type { VmListRow } from '@/lib/services/reports/list-vms';
import { formatBytes } from '@/lib/format';
import { vmHref } from './vm-href';
import { LocalTime } from '@/components/ui/local-time';

type SortKey = 'name' | 'source' | 'lastBackupAt' | 'lastGoodBackupAt' | 'logicalBytes' | 'commonDisks';
type State = 'all' | 'overdue' | 'unscheduled' | 'verify-failed';

/** Overdue: its next scheduled run is past (no worker fired it, or it waits to start), or it is past a job's RPO. */
const isOverdue = (vm: VmListRow) => Boolean(vm.nextRun?.overdue) || vm.pastRpo.length > 0;
type Filter = 'all' | 'yes' | 'no';

export function VmList({ vms }: { vms: VmListRow[] }) {
  const [search, setSearch] = useState('');
  const [sort, setSort] = useState<{ key: SortKey; descending: boolean }>({ key: 'name', descending: false });
  const [isProtected, setProtected] = useState<Filter>('all');
  const [hasCommon, setHasCommon] = useState<Filter>('all');
  const [result, setResult] = useState<'all' | 'ok' | 'failed' | 'never'>('all');
  const [state, setState] = useState<State>('all');

  const shown = useMemo(() => {
    const needle = search.trim().toLowerCase();
    const rows = vms.filter((vm) =>
      (!needle || vm.name.toLowerCase().includes(needle) || vm.source.toLowerCase().includes(needle) || vm.sharesWith.some((n) => n.toLowerCase().includes(needle)))
      && (isProtected === 'all' || (isProtected === 'yes') === vm.backups > 0)
      && (hasCommon === 'all' || (hasCommon === 'yes') === vm.commonDisks > 0)
      && (result === 'all' || (result === 'never' ? vm.lastResult === null : vm.lastResult === result))
      && (state === 'all' || (state === 'overdue' ? isOverdue(vm) : state === 'unscheduled' ? vm.nextRun === null : vm.failedVerifies > 0)));
    const sign = sort.descending ? -1 : 1;
    return rows.sort((a, b) => {
      const x = a[sort.key] ?? '';
      const y = b[sort.key] ?? '';
      return (x < y ? -1 : x > y ? 1 : 0) * sign || a.name.localeCompare(b.name);
    });
  }, [vms, search, sort, isProtected, hasCommon, result, state]);

  const header = (key: SortKey, label: string, right = false) => (
    <th className={`px-3 py-2 ${right ? 'text-right' : ''}`} aria-sort={sort.key === key ? (sort.descending ? 'descending' : 'ascending') : 'none'}>
      <button type="button" onClick={() => setSort({ key, descending: sort.key === key ? !sort.descending : false })}>
        {label}{sort.key === key ? (sort.descending ? ' ↓' : ' ↑') : ''}
      </button>
    </th>
  );
  const select = 'rounded border border-slate-300 px-2 py-1 text-sm';

  return (
    <div className="space-y-4">
      <h1 className="text-2xl font-semibold">VMs</h1>
      <div className="flex flex-wrap items-center gap-3">
        <input type="search" aria-label="Search VMs" placeholder="Search by VM, source or sharing VM" value={search} onChange={(e) => setSearch(e.target.value)} className="w-72 rounded border border-slate-300 px-2 py-1 text-sm" />
        <label className="text-sm">Protected <select aria-label="Protected" value={isProtected} onChange={(e) => setProtected(e.target.value as Filter)} className={select}><option value="all">any</option><option value="yes">yes</option><option value="no">no</option></select></label>
        <label className="text-sm">Has common disks <select aria-label="Has common disks" value={hasCommon} onChange={(e) => setHasCommon(e.target.value as Filter)} className={select}><option value="all">any</option><option value="yes">yes</option><option value="no">no</option></select></label>
        <label className="text-sm">Last result <select aria-label="Last result" value={result} onChange={(e) => setResult(e.target.value as typeof result)} className={select}><option value="all">any</option><option value="ok">backed up</option><option value="failed">failed</option><option value="never">never backed up</option></select></label>
        <label className="text-sm">State <select aria-label="State" value={state} onChange={(e) => setState(e.target.value as State)} className={select}><option value="all">any</option><option value="overdue">overdue</option><option value="unscheduled">no schedule</option><option value="verify-failed">verify failed</option></select></label>
        <span className="text-sm text-slate-500" data-testid="vm-count">{shown.length} of {vms.length} VMs</span>
      </div>
      <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
        <thead className="bg-slate-100 text-left text-slate-600">
          <tr>{header('name', 'VM')}{header('source', 'Source')}{header('commonDisks', 'Common disks')}<th className="px-3 py-2">Shares with</th>{header('lastBackupAt', 'Last backup')}{header('logicalBytes', 'Size', true)}<th className="px-3 py-2">Last result</th>{header('lastGoodBackupAt', 'Last good backup')}<th className="px-3 py-2">Verify</th><th className="px-3 py-2">Next run</th></tr>
        </thead>
        <tbody>
          {shown.map((vm) => (
            <tr key={vm.id} className="border-t border-slate-100" data-testid={`vm-${vm.source}-${vm.name}`}>
              <td className="px-3 py-2"><Link href={vmHref(vm)} className="text-blue-700 hover:underline">{vm.name}</Link>{!vm.seenInLastScan && <span className="ml-2 text-xs text-amber-700">not in its source any more</span>}</td>
              <td className="px-3 py-2">{vm.source}</td>
              <td className="px-3 py-2">{vm.commonDisks}</td>
              <td className="px-3 py-2">{vm.sharesWith.join(', ')}</td>
              <td className="px-3 py-2">{vm.lastBackupAt ? <LocalTime iso={vm.lastBackupAt} /> : 'never'}</td>
              <td className="px-3 py-2 text-right">{vm.backups ? formatBytes(vm.logicalBytes) : ''}</td>
              <td className="px-3 py-2">{vm.lastResult === 'failed' ? <span className="text-red-700" title={vm.lastError ?? ''}>failed</span> : vm.lastResult === 'ok' ? 'backed up' : <span className="text-amber-700">unprotected</span>}</td>
              <td className="px-3 py-2" data-testid="last-good">{vm.lastGoodBackupAt ? <LocalTime iso={vm.lastGoodBackupAt} /> : vm.backups ? <span className="text-red-700">none</span> : 'never'}</td>
              <td className="px-3 py-2" data-testid="verify"><VerifyState vm={vm} /></td>
              <td className="px-3 py-2" data-testid="next-run"><NextRun vm={vm} /></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The newest backup's verify and restore drill, and a warning when any backup of the VM was found damaged. */
function VerifyState({ vm }: { vm: VmListRow }) {
  const failedOthers = vm.failedVerifies - (vm.verify?.state === 'failed' ? 1 : 0);
  return (
    <>
      {!vm.verify ? '' : vm.verify.state === 'ok' ? <>ok{vm.verify.at && <span className="text-slate-500"> · <LocalTime iso={vm.verify.at} /></span>}</>
        : vm.verify.state === 'failed' ? <span className="text-red-700" title={vm.verify.problems.join('\n')}>failed</span>
        : <span className="text-slate-500">not verified</span>}
      {failedOthers > 0 && <div className="text-xs text-red-700">{failedOthers} older backup{failedOthers === 1 ? '' : 's'} failed verify</div>}
      {vm.drill && (
        <div className={`text-xs ${vm.drill.state === 'ok' ? 'text-slate-500' : 'text-red-700'}`} title={vm.drill.problems.join('\n')}>
          restore drill {vm.drill.state} · <LocalTime iso={vm.drill.at} />
        </div>
      )}
    </>
  );
}

function NextRun({ vm }: { vm: VmListRow }) {
  const { nextRun, pastRpo } = vm;
  return (
    <>
      {!nextRun ? <span className="text-amber-700">no schedule</span>
        : !nextRun.at ? <span title={`job ${nextRun.job}`}>unknown (time zone)</span>
        : nextRun.overdue ? <span className="text-red-700" title={`job ${nextRun.job}: its run was due then and has not started`}>overdue since <LocalTime iso={nextRun.at} /></span>
        : <span title={`job ${nextRun.job}`}><LocalTime iso={nextRun.at} /></span>}
      {pastRpo.length > 0 && <div className="text-xs text-red-700">past RPO: {pastRpo.map((p) => `${p.rpoHours} h (${p.job})`).join(', ')}</div>}
    </>
  );
}
