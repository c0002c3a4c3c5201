import { NextResponse } from 'next/server';
import { getCurrentUser } from '@/lib/auth/current-user';
import { can } from '@/lib/auth/roles';
import { getJob } from '@/lib/catalog/jobs';
import { getCatalog } from '@/lib/db';
import { AppError } from '@/lib/errors';

export const dynamic = 'force-dynamic';

/** One job with its live progress (the restore page polls it). */
export async function GET(_request: Request, { params }: { params: Promise<{ id: string }> }) {
  const user = await getCurrentUser();
  if (!user) return NextResponse.json({ error: 'sign in first' }, { status: 401 });
  if (!can(user.role, 'read')) return NextResponse.json({ error: 'not allowed' }, { status: 403 });
  try {
    return NextResponse.json({ job: await getJob(await getCatalog(), (await params).id) });
  } catch (err) {
    if (err instanceof AppError && err.code === 'NOT_FOUND') return NextResponse.json({ error: 'no such job' }, { status: 404 });
    throw err;
  }
}
