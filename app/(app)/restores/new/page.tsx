import { forbidden } from 'next/navigation';
import { RestoreWizard } from '@/components/restores/restore-wizard';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listVms } from '@/lib/services/reports/list-vms';
import { listBackups } from '@/lib/services/reports/list-backups';
import { getApprovalPolicy } from '@/lib/services/restores/get-approval-policy';
import { restoreRoots } from '@/lib/config';
import { getCatalog, getCatalogSql } from '@/lib/catalog/db';

export default async function NewRestorePage({ searchParams }: { searchParams: Promise<{ vm?: string; source?: string }> }) {
  const user = await requireUser();
  if (!can(user.role, 'request-restore')) forbidden();
  const db = await getCatalog();
  const [vms, policy] = await Promise.all([listVms(db, { sql: await getCatalogSql() }), getApprovalPolicy(db)]);
  const withBackups = vms.filter((vm) => vm.backups > 0).map((vm) => ({ name: vm.name, source: vm.source }));
  // Coming from a VM's page: that VM is chosen, its backups listed.
  const { vm, source } = await searchParams;
  const preset = withBackups.find((v) => v.name === vm && v.source === source);
  const initial = preset ? { vm: { vm: preset.name, source: preset.source }, backups: (await listBackups(db, { vm: preset.name })).filter((b) => b.source === preset.source) } : undefined;
  return <RestoreWizard vms={withBackups} allowOverwrite={policy.allowOverwrite} restoreRoots={restoreRoots()} initial={initial} />;
}
