import { VmList } from '@/components/vms/vm-list';
import { listVms } from '@/lib/services/reports/list-vms';
import { getCatalog, getCatalogSql } from '@/lib/catalog/db';
import { requireUser } from '@/lib/auth/require-user';

export default async function VmsPage() {
  // Checked here too: a partial render of this page alone must not skip the layout's check.
  await requireUser();
  return <VmList vms={await listVms(await getCatalog(), { sql: await getCatalogSql() })} />;
}
