import { type NextRequest, NextResponse } from 'next/server';
import { routeUser } from '@/lib/auth/route-user';
import { AUDIT_REQUEST_ID, listAudit } from '@/lib/services/audit/list-audit';
import { toCsv } from '@/lib/csv';
import { getCatalog } from '@/lib/catalog/db';

export const dynamic = 'force-dynamic';

/** CSV export of the audit log (newest first; ?action=prefix and ?request=<restore request id> filter, ?limit= up to 100,000). */
export async function GET(request: NextRequest) {
  const { refused } = await routeUser('audit');
  if (refused) return refused;
  const limit = Math.min(100_000, Math.max(1, Number(request.nextUrl.searchParams.get('limit')) || 10_000));
  const requestId = request.nextUrl.searchParams.get('request')?.toLowerCase();
  // Never the whole log for a filter that cannot match: refused.
  if (requestId !== undefined && !AUDIT_REQUEST_ID.test(requestId)) return NextResponse.json({ error: `'${requestId}' is not a restore request id` }, { status: 400 });
  const events = await listAudit(await getCatalog(), { action: request.nextUrl.searchParams.get('action') ?? undefined, limit, requestId });
  const rows = events.map((e) => ({ ...e, at: e.at.toISOString(), detail: JSON.stringify(e.detail) }));
  return new NextResponse(toCsv(rows, ['id', 'at', 'actor', 'action', 'target', 'detail']), {
    headers: { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="vmdedup-audit.csv"' },
  });
}
