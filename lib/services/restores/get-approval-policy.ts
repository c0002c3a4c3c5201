import type { Catalog } from '../../catalog/db';
import type { TApprovalPolicy } from '../../validation/restores';

export type ApprovalPolicyView = TApprovalPolicy & { updatedBy: string; updatedAt: string };

export async function getApprovalPolicy(db: Catalog): Promise<ApprovalPolicyView> {
  // The row is made once, with the schema's defaults; later reads write nothing.
  const row = (await db.approvalPolicy.findUnique({ where: { id: 'default' } })) ?? (await db.approvalPolicy.upsert({ where: { id: 'default' }, create: {}, update: {} }));
  return { inPlace: row.inPlace, overwriteCommon: row.overwriteCommon, drift: row.drift, allowOverwrite: row.allowOverwrite, expiryHours: row.expiryHours, updatedBy: row.updatedBy, updatedAt: row.updatedAt.toISOString() };
}
