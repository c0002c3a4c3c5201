import { SavingsReport } from '@/components/savings/savings-report';
import { getSavings } from '@/lib/catalog/savings';
import { getCatalogSql } from '@/lib/db';

export default async function SavingsPage() {
  return <SavingsReport savings={await getSavings(await getCatalogSql())} />;
}
