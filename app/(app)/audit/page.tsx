import { forbidden } from 'next/navigation';
import { Suspense } from 'react';
import { AuditChainLine } from '@/components/audit/audit-chain-line';
import { AuditLog } from '@/components/audit/audit-log';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listAudit } from '@/lib/services/audit/list-audit';
import { verifyAuditChain } from '@/lib/services/audit/verify-audit-chain';
import { getCatalog, getCatalogSql } from '@/lib/catalog/db';

export default async function AuditPage({ searchParams }: { searchParams: Promise<{ action?: string }> }) {
  const user = await requireUser();
  if (!can(user.role, 'audit')) forbidden();
  const { action } = await searchParams;
  const chain = <Suspense fallback={<AuditChainLine />}><AuditChainStatus /></Suspense>;
  return <AuditLog events={await listAudit(await getCatalog(), { action, limit: 500 })} action={action ?? ''} chain={chain} />;
}

/** The whole chain is checked on every view (about a second for 100,000 events): streamed in, not waited for. */
async function AuditChainStatus() {
  const report = await verifyAuditChain(await getCatalogSql()).catch((err: unknown) => {
    console.error('vmdedup: audit chain check failed', err);
    return 'unavailable' as const;
  });
  return <AuditChainLine report={report} />;
}
