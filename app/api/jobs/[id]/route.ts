import { NextResponse } from 'next/server';
import { routeUser } from '@/lib/auth/route-user';
import { getJob } from '@/lib/services/jobs/get-job';
import { getCatalog } from '@/lib/catalog/db';
import { AppError } from '@/lib/errors';

export const dynamic = 'force-dynamic';

/** One job with its live progress (the restore page polls it). */
export async function GET(_request: Request, { params }: { params: Promise<{ id: string }> }) {
  const { refused } = await routeUser('read');
  if (refused) return refused;
  try {
    return NextResponse.json({ job: await getJob(await getCatalog(), (await params).id) });
  } catch (err) {
    if (err instanceof AppError && err.code === 'NOT_FOUND') return NextResponse.json({ error: 'no such job' }, { status: 404 });
    throw err;
  }
}
