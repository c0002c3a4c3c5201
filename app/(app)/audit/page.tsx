import { forbidden } from 'next/navigation';
import { AuditLog } from '@/components/audit/audit-log';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listAudit } from '@/lib/catalog/audit';
import { getCatalog } from '@/lib/db';

export default async function AuditPage({ searchParams }: { searchParams: Promise<{ action?: string }> }) {
  const user = await requireUser();
  if (!can(user.role, 'audit')) forbidden();
  const { action } = await searchParams;
  return <AuditLog events={await listAudit(await getCatalog(), { action, limit: 500 })} action={action ?? ''} />;
}
