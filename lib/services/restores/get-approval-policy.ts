import type { Catalog } from '../../catalog/db';
import type { TApprovalPolicy } from '../../validation/restores';

export type ApprovalPolicyView = TApprovalPolicy & { updatedBy: string; updatedAt: string };

export async function getApprovalPolicy(db: Catalog): Promise<ApprovalPolicyView> {
  // The row is made once, with the schema's defaults; later reads write nothing. Prisma's upsert is a read, then an
  // insert: two first readers at once (the layout and a page) race, and the loser reads the winner's row.
  let row = await db.approvalPolicy.findUnique({ where: { id: 'default' } });
  if (!row) {
    await db.approvalPolicy.createMany({ data: [{ id: 'default' }], skipDuplicates: true });
    row = await db.approvalPolicy.findUniqueOrThrow({ where: { id: 'default' } });
  }
  return { inPlace: row.inPlace, overwriteCommon: row.overwriteCommon, drift: row.drift, allowOverwrite: row.allowOverwrite, expiryHours: row.expiryHours, updatedBy: row.updatedBy, updatedAt: row.updatedAt.toISOString() };
}
