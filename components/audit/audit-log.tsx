import type { ReactNode } from 'react';
import type { AuditRow } from '@/lib/services/audit/list-audit';
import { LocalTime } from '@/components/ui/local-time';

const FILTERS = [['', 'everything'], ['sign-in', 'sign-ins'], ['user.', 'users'], ['source.', 'sources'], ['backup.', 'backups'], ['denied', 'refusals']] as const;

/** `chain`: the line that says whether the log's hash chain holds (streamed in when checked). */
export function AuditLog({ events, action, chain }: { events: AuditRow[]; action: string; chain?: ReactNode }) {
  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center gap-3">
        <h1 className="text-2xl font-semibold">Audit log</h1>
        <nav aria-label="Filter the audit log" className="flex gap-2 text-sm">
          {FILTERS.map(([prefix, label]) => (
            <a key={prefix} href={prefix ? `/audit?action=${encodeURIComponent(prefix)}` : '/audit'} className={`rounded px-2 py-1 ${prefix === action ? 'bg-slate-900 text-white' : 'border border-slate-300'}`}>{label}</a>
          ))}
        </nav>
        <a href={`/api/audit${action ? `?action=${encodeURIComponent(action)}` : ''}`} download className="ml-auto text-sm text-blue-700 hover:underline">Export CSV</a>
      </div>
      {chain}
      <p className="text-sm text-slate-500">Append-only: the database refuses to change or delete an event, and chains each to the one before it by its hash. Newest first; the latest {events.length} shown.</p>
      <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm">
        <thead className="bg-slate-100 text-left text-slate-600"><tr><th className="px-3 py-2">When</th><th className="px-3 py-2">Who</th><th className="px-3 py-2">What</th><th className="px-3 py-2">On</th><th className="px-3 py-2">Detail</th></tr></thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.id} className="border-t border-slate-100 align-top">
              <td className="whitespace-nowrap px-3 py-2"><LocalTime iso={e.at} /></td>
              <td className="px-3 py-2">{e.actor}</td>
              <td className="px-3 py-2 font-mono text-xs">{e.action}</td>
              <td className="px-3 py-2">{e.target}</td>
              <td className="px-3 py-2 font-mono text-xs break-all">{JSON.stringify(e.detail) === '{}' ? '' : JSON.stringify(e.detail)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
