import { VmList } from '@/components/vms/vm-list';
import { listVms } from '@/lib/catalog/list-vms';
import { getCatalog } from '@/lib/db';

export default async function VmsPage() {
  return <VmList vms={await listVms(await getCatalog())} />;
}
