import { SchedulesPage } from '@/components/schedules/schedules-page';
import { requireUser } from '@/lib/auth/require-user';
import { can } from '@/lib/auth/roles';
import { getCatalog } from '@/lib/catalog/db';
import { listScheduledJobs } from '@/lib/services/jobs/scheduled-jobs';
import { listJobs } from '@/lib/services/jobs/list-jobs';

export default async function Schedules() {
  const user = await requireUser();
  const db = await getCatalog();
  const [jobs, runs, sources] = await Promise.all([
    listScheduledJobs(db), listJobs(db, { limit: 20 }), db.source.findMany({ orderBy: { name: 'asc' }, select: { name: true } }),
  ]);
  return (
    <SchedulesPage
      jobs={jobs} runs={runs} sources={sources.map((s) => s.name)}
      canManage={can(user.role, 'manage')} canRun={can(user.role, 'backup')}
    />
  );
}
