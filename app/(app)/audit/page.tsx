import { forbidden } from 'next/navigation';
import { Suspense } from 'react';
import { AuditChainLine } from '@/components/audit/audit-chain-line';
import { AuditLog } from '@/components/audit/audit-log';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listAuditPage } from '@/lib/services/audit/list-audit';
import { verifyAuditChain } from '@/lib/services/audit/verify-audit-chain';
import { getCatalog, getCatalogSql } from '@/lib/catalog/db';

/** Events per page (the log is paged by id, newest first). */
const PAGE_SIZE = 100;

export default async function AuditPage({ searchParams }: { searchParams: Promise<{ action?: string; request?: string; before?: string }> }) {
  const user = await requireUser();
  if (!can(user.role, 'audit')) forbidden();
  const { action, request, before } = await searchParams;
  const requestId = request && /^[0-9a-f-]{36}$/.test(request) ? request : undefined;
  const chain = <Suspense fallback={<AuditChainLine />}><AuditChainStatus /></Suspense>;
  const page = await listAuditPage(await getCatalog(), { action, requestId, before, limit: PAGE_SIZE });
  return <AuditLog events={page.events} older={page.older} paged={Boolean(before)} action={action ?? ''} requestId={requestId} chain={chain} />;
}

/** The whole chain is checked on every view (about a second for 100,000 events): streamed in, not waited for. */
async function AuditChainStatus() {
  const report = await verifyAuditChain(await getCatalogSql()).catch((err: unknown) => {
    console.error('vmdedup: audit chain check failed', err);
    return 'unavailable' as const;
  });
  return <AuditChainLine report={report} />;
}
