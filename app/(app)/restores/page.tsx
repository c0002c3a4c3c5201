import { RestoreList } from '@/components/restores/restore-list';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { getApprovalPolicy } from '@/lib/services/restores/get-approval-policy';
import { listRestoreRequests } from '@/lib/services/restores/list-restore-requests';
import { getCatalog } from '@/lib/catalog/db';

export default async function RestoresPage() {
  const user = await requireUser();
  const db = await getCatalog();
  const [requests, policy] = await Promise.all([listRestoreRequests(db), getApprovalPolicy(db)]);
  return <RestoreList requests={requests} policy={policy} canRequest={can(user.role, 'request-restore')} canManage={can(user.role, 'manage')} />;
}
