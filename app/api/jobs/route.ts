import { NextResponse } from 'next/server';
import { routeUser } from '@/lib/auth/route-user';
import { listJobs } from '@/lib/services/jobs/list-jobs';
import { getCatalog } from '@/lib/catalog/db';

export const dynamic = 'force-dynamic';

/** Jobs with their live progress, polled by the Backups page. */
export async function GET() {
  const { refused } = await routeUser('read');
  if (refused) return refused;
  return NextResponse.json({ jobs: await listJobs(await getCatalog()) });
}
