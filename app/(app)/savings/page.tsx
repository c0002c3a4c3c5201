import { SavingsReport } from '@/components/savings/savings-report';
import { getSavings } from '@/lib/services/reports/get-savings';
import { getCatalogSql } from '@/lib/catalog/db';
import { requireUser } from '@/lib/auth/require-user';

export default async function SavingsPage() {
  // Checked here too: a partial render of this page alone must not skip the layout's check.
  await requireUser();
  return <SavingsReport savings={await getSavings(await getCatalogSql())} />;
}
