import { SourcesAdmin } from '@/components/sources/sources-admin';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { listJobs } from '@/lib/services/jobs/list-jobs';
import { listSourceViews } from '@/lib/services/sources/list-source-views';
import { getCatalog } from '@/lib/catalog/db';

export default async function SourcesPage() {
  const user = await requireUser();
  const db = await getCatalog();
  const [sources, jobs] = await Promise.all([listSourceViews(db), listJobs(db, { limit: 10 })]);
  return <SourcesAdmin sources={sources} jobs={jobs} canManage={can(user.role, 'manage')} canScan={can(user.role, 'backup')} />;
}
