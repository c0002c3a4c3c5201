import { forbidden } from 'next/navigation';
import { Suspense } from 'react';
import { AuditChainLine } from '@/components/audit/audit-chain-line';
import { AuditLog } from '@/components/audit/audit-log';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { AUDIT_REQUEST_ID, listAuditPage } from '@/lib/services/audit/list-audit';
import { verifyAuditChain } from '@/lib/services/audit/verify-audit-chain';
import { getCatalog, getCatalogSql } from '@/lib/catalog/db';

/** Events per page (the log is paged by id, newest first). */
const PAGE_SIZE = 100;

type Param = string | string[] | undefined;
/** A parameter given twice counts once (its first value). */
const first = (value: Param) => (Array.isArray(value) ? value[0] : value);

export default async function AuditPage({ searchParams }: { searchParams: Promise<{ action?: Param; request?: Param; before?: Param }> }) {
  const user = await requireUser();
  if (!can(user.role, 'audit')) forbidden();
  const params = await searchParams;
  const [action, request, before] = [first(params.action), first(params.request)?.toLowerCase(), first(params.before)];
  const chain = <Suspense fallback={<AuditChainLine />}><AuditChainStatus /></Suspense>;
  // A request filter that is no request id shows nothing, saying so: never the whole log as if it were filtered.
  if (request !== undefined && !AUDIT_REQUEST_ID.test(request)) return <AuditLog events={[]} action={action ?? ''} invalidFilter={`'${request}' is not a restore request id`} chain={chain} />;
  const page = await listAuditPage(await getCatalog(), { action, requestId: request, before, limit: PAGE_SIZE });
  return <AuditLog events={page.events} older={page.older} paged={Boolean(before)} action={action ?? ''} requestId={request} chain={chain} />;
}

/** The whole chain is checked on every view (about a second for 100,000 events): streamed in, not waited for. */
async function AuditChainStatus() {
  const report = await verifyAuditChain(await getCatalogSql()).catch((err: unknown) => {
    console.error('vmdedup: audit chain check failed', err);
    return 'unavailable' as const;
  });
  return <AuditChainLine report={report} />;
}
