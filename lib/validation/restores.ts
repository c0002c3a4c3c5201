import path from 'node:path';
import { z } from 'zod';
import { RESTORE_CHOICES, RESTORE_POLICIES } from '../engine/restore/plan';

export const ZRestoreTarget = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('in-place') }),
  z.object({ kind: z.literal('folder'), dir: z.string().trim().refine((d) => path.isAbsolute(d), 'give the target folder as an absolute path (starting with /)') }),
]);

/** What the wizard asks: which backup of which VM, where to, under which policy and choice. */
export const ZPlanRestore = z.object({
  vm: z.string().trim().min(1, 'choose a VM'),
  backupId: z.string().trim().min(1, 'choose a backup'),
  target: ZRestoreTarget,
  policy: z.enum(RESTORE_POLICIES).default('no-overwrite'),
  choice: z.enum(RESTORE_CHOICES).default('reattach'),
});
export type TPlanRestore = z.infer<typeof ZPlanRestore>;

/** The request: the plan's input, the fingerprint of the plan the user saw, and the sentence they agreed to. */
export const ZRequestRestore = ZPlanRestore.extend({
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  confirmed: z.literal(true, { error: 'tick the confirmation first' }),
});
export type TRequestRestore = z.infer<typeof ZRequestRestore>;

export const ZDecideRestore = z.object({ requestId: z.uuid(), approve: z.boolean(), note: z.string().trim().max(500).default('') });
export type TDecideRestore = z.infer<typeof ZDecideRestore>;

export const ZWithdrawRestore = z.object({ requestId: z.uuid() });

export const ZApprovalPolicy = z.object({
  inPlace: z.boolean(), overwriteCommon: z.boolean(), drift: z.boolean(), allowOverwrite: z.boolean(),
  expiryHours: z.number().int().min(1, 'requests last at least an hour').max(24 * 30, 'requests last at most 30 days'),
});
export type TApprovalPolicy = z.infer<typeof ZApprovalPolicy>;
