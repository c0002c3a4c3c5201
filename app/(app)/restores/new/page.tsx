import { NotAllowed } from '@/components/layout/not-allowed';
import { RestoreWizard } from '@/components/restores/restore-wizard';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listVms } from '@/lib/catalog/list-vms';
import { getApprovalPolicy } from '@/lib/catalog/restore-requests';
import { getCatalog } from '@/lib/db';

export default async function NewRestorePage() {
  const user = await requireUser();
  if (!can(user.role, 'request-restore')) return <NotAllowed role={user.role} what="request restores" />;
  const db = await getCatalog();
  const [vms, policy] = await Promise.all([listVms(db), getApprovalPolicy(db)]);
  return <RestoreWizard vms={vms.filter((vm) => vm.backups > 0).map((vm) => ({ name: vm.name, source: vm.source }))} allowOverwrite={policy.allowOverwrite} />;
}
