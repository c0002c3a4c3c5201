import { type NextRequest, NextResponse } from 'next/server';
import { routeUser } from '@/lib/auth/route-user';
import { getSavings } from '@/lib/services/reports/get-savings';
import { toCsv } from '@/lib/csv';
import { getCatalogSql } from '@/lib/catalog/db';

export const dynamic = 'force-dynamic';

/** CSV export of the savings report: ?view=disks (default), vms or runs. */
export async function GET(request: NextRequest) {
  const { refused } = await routeUser('read');
  if (refused) return refused;
  const view = request.nextUrl.searchParams.get('view') ?? 'disks';
  const savings = await getSavings(await getCatalogSql());
  const csv = view === 'vms'
    ? toCsv(savings.byVm, ['vm', 'source', 'backups', 'bytesSaved', 'bytesReused'])
    : view === 'runs'
      ? toCsv(savings.byRun, ['runId', 'at', 'vms', 'logicalBytes', 'bytesRead', 'bytesWritten', 'bytesReferenced'])
      : view === 'disks'
        ? toCsv(savings.byCommonDisk, ['path', 'identifier', 'source', 'vms', 'copiesAvoided', 'bytesSaved', 'bytesReused', 'storedBytes'])
        : undefined;
  if (!csv) return NextResponse.json({ error: "view must be 'disks', 'vms' or 'runs'" }, { status: 400 });
  return new NextResponse(csv, {
    headers: { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': `attachment; filename="vmdedup-savings-${view}.csv"` },
  });
}
