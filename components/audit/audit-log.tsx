import type { ReactNode } from 'react';
import type { AuditRow } from '@/lib/services/audit/list-audit';
import { LocalTime } from '@/components/ui/local-time';

const FILTERS = [
  ['', 'everything'], ['sign-in', 'sign-ins'], ['user.', 'users'], ['source.', 'sources'], ['backup.', 'backups'], ['restore.', 'restores'],
  ['job.', 'jobs'], ['policy.', 'policies'], ['denied', 'refusals'],
] as const;

/** Values longer than this are cut in the table (the whole event is one click away, and in the CSV). */
const VALUE_CHARS = 80;

const valueText = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/** An event's detail as a few key: value lines, not a wall of JSON; the whole of it behind a disclosure when long. */
function Detail({ detail }: { detail: unknown }) {
  if (detail === null || typeof detail !== 'object' || Array.isArray(detail)) return detail === null || detail === undefined ? null : <span>{valueText(detail)}</span>;
  const entries = Object.entries(detail as Record<string, unknown>).filter(([, value]) => value !== undefined && value !== null && value !== '');
  if (entries.length === 0) return null;
  const long = entries.some(([, value]) => valueText(value).length > VALUE_CHARS);
  return (
    <div>
      <dl className="grid grid-cols-[auto_1fr] gap-x-2">
        {entries.map(([key, value]) => {
          const text = valueText(value);
          return (
            <div key={key} className="contents">
              <dt className="text-slate-500">{key}</dt>
              <dd className="break-all">{text.length > VALUE_CHARS ? `${text.slice(0, VALUE_CHARS)}…` : text}</dd>
            </div>
          );
        })}
      </dl>
      {long && <details><summary className="cursor-pointer text-blue-700">whole event</summary><pre className="whitespace-pre-wrap break-all">{JSON.stringify(detail, null, 2)}</pre></details>}
    </div>
  );
}

const query = (params: Record<string, string | undefined>) => {
  const search = new URLSearchParams(Object.entries(params).filter((entry): entry is [string, string] => Boolean(entry[1])));
  return search.size ? `?${search}` : '';
};

/**
 * `chain`: the line that says whether the log's hash chain holds (streamed in when checked). One page of events,
 * newest first; `older`: where the next page starts. `requestId`: only the events of one restore request.
 */
export function AuditLog({ events, action, requestId, older, paged = false, invalidFilter, chain }: {
  events: AuditRow[]; action: string; requestId?: string; older?: string; paged?: boolean; invalidFilter?: string; chain?: ReactNode;
}) {
  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center gap-3">
        <h1 className="text-2xl font-semibold">Audit log</h1>
        <nav aria-label="Filter the audit log" className="flex flex-wrap gap-2 text-sm">
          {FILTERS.map(([prefix, label]) => (
            <a key={prefix} href={`/audit${query({ action: prefix })}`} aria-current={prefix === action && !requestId ? 'page' : undefined}
              className={`rounded px-2 py-1 ${prefix === action && !requestId ? 'bg-slate-900 text-white' : 'border border-slate-300'}`}>{label}</a>
          ))}
        </nav>
        <a href={`/api/audit${query({ action, request: requestId })}`} download className="ml-auto text-sm text-blue-700 hover:underline">Export CSV</a>
      </div>
      {chain}
      {invalidFilter && <p className="text-sm text-red-700" role="alert">No events shown: {invalidFilter}. <a href="/audit" className="text-blue-700 hover:underline">All events</a></p>}
      {requestId && <p className="text-sm" data-testid="audit-request-filter">The events of restore request <a href={`/restores/${requestId}`} className="font-mono text-xs text-blue-700 hover:underline">{requestId}</a> · <a href="/audit" className="text-blue-700 hover:underline">all events</a></p>}
      <p className="text-sm text-slate-500">Append-only: the database refuses to change or delete an event, and chains each to the one before it by its hash. Newest first, {events.length} on this page.</p>
      <table className="w-full overflow-hidden rounded-lg border border-slate-200 bg-white text-sm" aria-label="Audit events">
        <thead className="bg-slate-100 text-left text-slate-600"><tr><th className="px-3 py-2">When</th><th className="px-3 py-2">Who</th><th className="px-3 py-2">What</th><th className="px-3 py-2">On</th><th className="px-3 py-2">Detail</th></tr></thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.id} className="border-t border-slate-100 align-top" data-testid="audit-event">
              <td className="whitespace-nowrap px-3 py-2"><LocalTime iso={e.at} /></td>
              <td className="px-3 py-2">{e.actor}</td>
              <td className="px-3 py-2 font-mono text-xs">{e.action}</td>
              <td className="px-3 py-2">{e.target}</td>
              <td className="px-3 py-2 text-xs"><Detail detail={e.detail} /></td>
            </tr>
          ))}
        </tbody>
      </table>
      <nav aria-label="Pages of the audit log" className="flex gap-3 text-sm">
        {paged && <a href={`/audit${query({ action, request: requestId })}`} className="text-blue-700 hover:underline">Newest events</a>}
        {older && <a href={`/audit${query({ action, request: requestId, before: older })}`} className="text-blue-700 hover:underline">Older events</a>}
      </nav>
    </div>
  );
}
