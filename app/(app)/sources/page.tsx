import { SourcesAdmin } from '@/components/sources/sources-admin';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listJobs } from '@/lib/catalog/jobs';
import { listSourceViews } from '@/lib/catalog/manage-sources';
import { getCatalog } from '@/lib/db';

export default async function SourcesPage() {
  const user = await requireUser();
  const db = await getCatalog();
  const [sources, jobs] = await Promise.all([listSourceViews(db), listJobs(db, { limit: 10 })]);
  return <SourcesAdmin sources={sources} jobs={jobs} canManage={can(user.role, 'manage')} canScan={can(user.role, 'backup')} />;
}
