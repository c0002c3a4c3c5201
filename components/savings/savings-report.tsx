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
      <p className="text-sm text-slate-600">
        Every backup of a VM that found a common disk already stored referenced it instead of storing a copy.{' '}
        <span data-testid="total-saved" className="font-semibold text-slate-900">{formatBytes(savings.totalSaved)}</span> saved by{' '}
        <span data-testid="copies-avoided" className="font-semibold text-slate-900">{savings.copiesAvoided}</span> copies avoided.
      </p>
      <Table id="by-disk" title="Per common disk" csv="disks" head={['Common disk', 'Shared by', 'Copies avoided', 'Bytes saved', 'Stored once as']}>
        {savings.byCommonDisk.map((d) => (
          <tr key={`${d.source}/${d.identifier}`} className="border-t border-slate-100">
            <td className={`${cell} font-mono text-xs`}>{d.path}</td><td className={cell}>{d.vms.join(', ')}</td>
            <td className={cell}>{d.copiesAvoided}</td><td className={cell} data-bytes={d.bytesSaved}>{formatBytes(d.bytesSaved)}</td><td className={cell}>{formatBytes(d.storedBytes)}</td>
          </tr>
        ))}
      </Table>
      <Table id="by-vm" title="Per VM" csv="vms" head={['VM', 'Source', 'Backups', 'Copies avoided', 'Bytes saved']}>
        {savings.byVm.map((v) => (
          <tr key={`${v.source}/${v.vm}`} className="border-t border-slate-100">
            <td className={cell}>{v.vm}</td><td className={cell}>{v.source}</td><td className={cell}>{v.backups}</td><td className={cell}>{v.copiesAvoided}</td><td className={cell}>{formatBytes(v.bytesSaved)}</td>
          </tr>
        ))}
      </Table>
      <Table id="by-run" title="Per backup run" csv="runs" head={['Run', 'When', 'VMs', 'Logical', 'Read', 'Written', 'Bytes saved']}>
        {savings.byRun.map((r) => (
          <tr key={r.runId} className="border-t border-slate-100">
            <td className={`${cell} font-mono text-xs`}>{r.runId}</td><td className={cell}><LocalTime iso={r.at} /></td><td className={cell}>{r.vms}</td>
            <td className={cell}>{formatBytes(r.logicalBytes)}</td><td className={cell}>{formatBytes(r.bytesRead)}</td><td className={cell}>{formatBytes(r.bytesWritten)}</td><td className={cell}>{formatBytes(r.bytesSaved)}</td>
          </tr>
        ))}
      </Table>
    </div>
  );
}
