import type { OverviewData } from '@/lib/services/reports/load-overview';
import { formatBytes } from '@/lib/format';
import { StorageChart } from './storage-chart';
import { LocalTime } from '@/components/ui/local-time';
import Link from 'next/link';
import type { OverdueItem, OverdueKind } from '@/lib/services/reports/list-overdue';
import { vmHref } from '@/components/vms/vm-href';

/** Per kind at most this many lines: a fleet whose worker is down has every VM past its RPO. */
const SHOWN_PER_KIND = 20;

function Overdue({ items }: { items: OverdueItem[] }) {
  const byKind = new Map<OverdueKind, OverdueItem[]>();
  for (const item of items) byKind.set(item.kind, [...byKind.get(item.kind) ?? [], item]);
  return (
    <section aria-labelledby="overdue">
      <h2 id="overdue" className="mb-3 text-lg font-semibold">Overdue</h2>
      {items.length === 0 ? <p className="text-slate-500">Nothing is overdue.</p> : (
        <ul className="space-y-1 text-sm">
          {[...byKind.values()].flatMap((group) => [
            ...group.slice(0, SHOWN_PER_KIND).map((item) => (
              <li key={`${item.kind}:${item.subject}`} data-testid={`overdue-${item.kind}`}>
                <span className="font-medium">{item.vm ? <Link href={vmHref(item.vm)} className="text-blue-700 hover:underline">{item.subject}</Link> : item.subject}</span>
                : <span className={item.kind === 'rpo' || item.kind === 'job-failed' ? 'text-red-700' : 'text-amber-700'}>{item.reason}</span>
                {item.at && <span className="text-slate-500"> · {item.at.label} <LocalTime iso={item.at.iso} /></span>}
              </li>
            )),
            ...(group.length > SHOWN_PER_KIND ? [<li key={`${group[0].kind}:more`} className="text-slate-500">and {group.length - SHOWN_PER_KIND} more{group[0].vm && <> (see the <Link href="/vms" className="text-blue-700 hover:underline">VMs page</Link>)</>}</li>] : []),
          ])}
        </ul>
      )}
    </section>
  );
}

function Figure({ label, value, testId }: { label: string; value: string; testId: string }) {
  return (
    <div className="rounded-lg border border-slate-200 bg-white p-4" data-testid={testId}>
      <div className="text-sm text-slate-500">{label}</div>
      <div className="mt-1 text-2xl font-semibold">{value}</div>
    </div>
  );
}

export function Overview({ data }: { data: OverviewData }) {
  const { stats, commonDisks, sources, history, recentJobs, overdue, recentRuns } = data;
  return (
    <div className="space-y-8">
      <section aria-label="Totals" className="grid grid-cols-2 gap-4 md:grid-cols-3">
        <Figure label="VMs protected" value={`${stats.vmsProtected} / ${stats.vms}`} testId="vms-protected" />
        <Figure label="VMs unprotected" value={String(stats.vms - stats.vmsProtected)} testId="vms-unprotected" />
        <Figure label="Dedup ratio (logical / stored)" value={`${stats.dedupRatio.toFixed(2)}x`} testId="dedup-ratio" />
        <Figure label="Logical bytes" value={formatBytes(stats.logicalBytes)} testId="logical-bytes" />
        <Figure label="Stored bytes" value={formatBytes(stats.storedBytes)} testId="stored-bytes" />
        <Figure label="Saved by common disks (sharing between VMs)" value={formatBytes(stats.savedByCommonDisks)} testId="saved-common" />
      </section>

      <Overdue items={overdue} />

      <section aria-labelledby="growth">
        <h2 id="growth" className="mb-3 text-lg font-semibold">Logical vs stored bytes</h2>
        <StorageChart points={history} />
      </section>

      <section aria-labelledby="last-results">
        <h2 id="last-results" className="mb-3 text-lg font-semibold">Last results</h2>
        {recentJobs.length === 0 ? (
          recentRuns.length === 0 ? <p className="text-slate-500">No backup has run yet.</p> : (
            <ul className="space-y-1 text-sm" aria-label="Backup runs">
              {recentRuns.map((run) => (
                <li key={run.runId} data-testid="backup-run">
                  <span className="font-medium">Backup of {run.vms} VM{run.vms === 1 ? '' : 's'}</span>: {formatBytes(run.logicalBytes)} protected, {formatBytes(run.bytesWritten)} written
                  <span className="text-slate-500"> · <LocalTime iso={run.at} /> · not run as a job (the CLI, or npm start&apos;s first backup)</span>
                </li>
              ))}
            </ul>
          )
        ) : (
          <ul className="space-y-1 text-sm">
            {recentJobs.map((job) => (
              <li key={job.id}>
                <span className="font-medium">{job.label}</span>: <span className={job.state === 'failed' ? 'text-red-700' : job.state === 'partial' ? 'text-amber-700' : ''}>{job.state}</span>
                {job.message && <span className="text-slate-600"> · {job.message}</span>}
                <span className="text-slate-500"> · <LocalTime iso={job.createdAt} /></span>
                {job.error && <div className="text-xs text-red-700">{job.error}</div>}
              </li>
            ))}
          </ul>
        )}
      </section>

      <section aria-labelledby="common-disks">
        <h2 id="common-disks" className="mb-3 text-lg font-semibold">Common disks</h2>
        {commonDisks.length === 0 ? (
          <p className="text-slate-500">No common disks yet: back up VMs that share disks.</p>
        ) : (
          <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
            <thead className="bg-slate-100 text-left text-slate-600">
              <tr><th className="p-2">Disk</th><th className="p-2">Shared by</th><th className="p-2">Logical</th><th className="p-2">Stored</th><th className="p-2">Copies</th></tr>
            </thead>
            <tbody>
              {commonDisks.map((disk) => (
                <tr key={disk.identifier + disk.path} className="border-t border-slate-100">
                  <td className="p-2 font-mono text-xs">{disk.path}</td>
                  <td className="p-2">{disk.vms.join(', ')}</td>
                  <td className="p-2">{formatBytes(disk.logicalBytes)}</td>
                  <td className="p-2">{formatBytes(disk.storedBytes)}</td>
                  <td className="p-2">{disk.copiesStored}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section aria-labelledby="sources">
        <h2 id="sources" className="mb-3 text-lg font-semibold">Sources</h2>
        <ul className="space-y-1 text-sm">
          {sources.map((source) => (
            <li key={source.id}><span className="font-medium">{source.name}</span> <span className="text-slate-500">({source.type}) {source.path}</span></li>
          ))}
        </ul>
      </section>
    </div>
  );
}
