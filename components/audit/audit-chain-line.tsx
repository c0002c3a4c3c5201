import type { AuditChainReport } from '@/lib/services/audit/verify-audit-chain';
import { LocalTime } from '@/components/ui/local-time';

/** One line above the audit log: whether its hash chain holds (checked on every view), or where it breaks. */
export function AuditChainLine({ report }: { report?: AuditChainReport | 'unavailable' }) {
  // Its own test id: while the result streams in, React briefly holds both in the page.
  if (!report) return <p data-testid="audit-chain-checking" className="text-sm text-slate-500">Checking the audit chain…</p>;
  if (report === 'unavailable') return <p data-testid="audit-chain" className="text-sm text-amber-700">The audit chain could not be checked just now; <code>vmdedup audit verify</code> checks it.</p>;
  if (report.broken) {
    const { id, seq, at, action, message } = report.broken;
    return (
      <p data-testid="audit-chain" data-intact="false" className="rounded border border-red-300 bg-red-50 px-3 py-2 text-sm font-medium text-red-800">
        Chain broken at event {id} (#{seq}, <LocalTime iso={at} />, <span className="font-mono">{action}</span>): {message}. Events from there on cannot be trusted.
      </p>
    );
  }
  return (
    <p data-testid="audit-chain" data-intact="true" className="text-sm text-emerald-800">
      Chain intact: {report.events} event{report.events === 1 ? '' : 's'} verified
      {report.last ? <> (last hash <span className="font-mono">{report.last.hash.slice(0, 12)}</span>)</> : null}.
    </p>
  );
}
