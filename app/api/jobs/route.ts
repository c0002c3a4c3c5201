import { NextResponse } from 'next/server';
import { getCurrentUser } from '@/lib/auth/current-user';
import { can } from '@/lib/auth/roles';
import { listJobs } from '@/lib/catalog/jobs';
import { getCatalog } from '@/lib/db';

export const dynamic = 'force-dynamic';

/** Jobs with their live progress, polled by the Backups page. */
export async function GET() {
  const user = await getCurrentUser();
  if (!user) return NextResponse.json({ error: 'sign in first' }, { status: 401 });
  if (!can(user.role, 'read')) return NextResponse.json({ error: 'not allowed' }, { status: 403 });
  return NextResponse.json({ jobs: await listJobs(await getCatalog()) });
}
