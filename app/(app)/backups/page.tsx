import { BackupsPage } from '@/components/jobs/backups-page';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { loadBackupsPage } from '@/lib/services/backups/load-backups-page';
import { getCatalog } from '@/lib/catalog/db';

export default async function Backups() {
  const user = await requireUser();
  return <BackupsPage data={await loadBackupsPage(await getCatalog())} canBackUp={can(user.role, 'backup')} />;
}
