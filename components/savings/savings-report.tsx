import type { ReactNode } from 'react';
import type { Savings } from '@/lib/services/reports/get-savings';
import { formatBytes } from '@/lib/format';
import { LocalTime } from '@/components/ui/local-time';

function Table({ id, title, csv, head, children }: { id: string; title: string; csv: string; head: string[]; children: ReactNode }) {
  return (
    <section aria-labelledby={id}>
      <div className="mb-3 flex items-center gap-3">
        <h2 id={id} className="text-lg font-semibold">{title}</h2>
        <a href={`/api/savings?view=${csv}`} download className="text-sm text-blue-700 hover:underline">Export CSV</a>
      </div>
      <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
        <thead className="bg-slate-100 text-left text-slate-600"><tr>{head.map((h) => <th key={h} className="px-3 py-2">{h}</th>)}</tr></thead>
        <tbody>{children}</tbody>
      </table>
    </section>
  );
}

const cell = 'px-3 py-2';

export function SavingsReport({ savings }: { savings: Savings }) {
  return (
    <div className="space-y-8">
      <h1 className="text-2xl font-semibold">Savings</h1>
      <div className="space-y-2 text-sm text-slate-600">
        <p>
          <span className="font-semibold text-slate-900">Sharing between VMs</span>: a disk several VMs use (a linked clones&apos; base, a shared
          configuration disk) is stored once, not once per VM:{' '}
          <span data-testid="total-saved" className="font-semibold text-slate-900">{formatBytes(savings.totalSaved)}</span> saved,{' '}
          <span data-testid="copies-avoided" className="font-semibold text-slate-900">{savings.copiesAvoided}</span> copies not stored.
        </p>
        <p>
          <span className="font-semibold text-slate-900">Incremental reuse</span>, apart: a VM&apos;s later backups of a disk that did not change name
          the copy its earlier backup stored (any disk, shared or not):{' '}
          <span data-testid="total-reused" className="font-semibold text-slate-900">{formatBytes(savings.totalReused)}</span> not stored again.
          Blocks shared between different disks are counted by the dedup ratio instead.
        </p>
      </div>
      <Table id="by-disk" title="Per common disk" csv="disks" head={['Common disk', 'Shared by', 'Copies not stored', 'Saved by sharing', 'Saved by reuse', 'Stored once as']}>
        {savings.byCommonDisk.map((d) => (
          <tr key={`${d.source}/${d.identifier}`} className="border-t border-slate-100">
            <td className={`${cell} font-mono text-xs`}>{d.path}</td><td className={cell}>{d.vms.join(', ')}</td>
            <td className={cell}>{d.copiesAvoided}</td><td className={cell} data-bytes={d.bytesSaved}>{formatBytes(d.bytesSaved)}</td>
            <td className={cell} data-bytes={d.bytesReused}>{formatBytes(d.bytesReused)}</td><td className={cell}>{formatBytes(d.storedBytes)}</td>
          </tr>
        ))}
      </Table>
      <Table id="by-vm" title="Per VM (each credited its part of a shared copy)" csv="vms" head={['VM', 'Source', 'Backups', 'Saved by sharing', 'Saved by reuse']}>
        {savings.byVm.map((v) => (
          <tr key={`${v.source}/${v.vm}`} className="border-t border-slate-100" aria-label={`savings of ${v.source}/${v.vm}`}>
            <td className={cell}>{v.vm}</td><td className={cell}>{v.source}</td><td className={cell}>{v.backups}</td>
            <td className={cell} data-bytes={v.bytesSaved}>{formatBytes(v.bytesSaved)}</td><td className={cell} data-bytes={v.bytesReused}>{formatBytes(v.bytesReused)}</td>
          </tr>
        ))}
      </Table>
      <Table id="by-run" title="Per backup run" csv="runs" head={['Run', 'When', 'VMs', 'Logical', 'Read', 'Written', 'Referenced, not read']}>
        {savings.byRun.map((r) => (
          <tr key={r.runId} className="border-t border-slate-100">
            <td className={`${cell} font-mono text-xs`}>{r.runId}</td><td className={cell}><LocalTime iso={r.at} /></td><td className={cell}>{r.vms}</td>
            <td className={cell}>{formatBytes(r.logicalBytes)}</td><td className={cell}>{formatBytes(r.bytesRead)}</td><td className={cell}>{formatBytes(r.bytesWritten)}</td><td className={cell}>{formatBytes(r.bytesReferenced)}</td>
          </tr>
        ))}
      </Table>
    </div>
  );
}
