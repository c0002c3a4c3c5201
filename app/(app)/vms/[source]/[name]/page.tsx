import { notFound } from 'next/navigation';
import { VmDetail } from '@/components/vms/vm-detail';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { getVm } from '@/lib/services/reports/get-vm';
import { getCatalog } from '@/lib/catalog/db';
import { AppError } from '@/lib/errors';

export default async function VmPage({ params }: { params: Promise<{ source: string; name: string }> }) {
  const user = await requireUser();
  const { source, name } = await params;
  const vm = await getVm(await getCatalog(), { source: decodeURIComponent(source), name: decodeURIComponent(name) }).catch((err) => {
    if (err instanceof AppError && err.code === 'NOT_FOUND') notFound();
    throw err;
  });
  return <VmDetail vm={vm} canRestore={can(user.role, 'request-restore')} canBackUp={can(user.role, 'backup')} />;
}
