import { z } from 'zod';

const ZCount = z.coerce.number().int().min(0).max(1_000_000);

/** Retention rules as prune's: counts per period, keep-within in days (the form's unit). */
export const ZRetention = z.object({
  last: ZCount.optional(), hourly: ZCount.optional(), daily: ZCount.optional(), weekly: ZCount.optional(),
  monthly: ZCount.optional(), yearly: ZCount.optional(), withinMs: z.coerce.number().min(0).max(100 * 365 * 86_400_000).optional(),
});
export type TRetention = z.infer<typeof ZRetention>;

export const ZTimeZone = z.string().trim().min(1).max(100);

export const ZScheduledJobForm = z.object({
  name: z.string().trim().min(1).max(64),
  // Sync jobs are made from the CLI only: where a copy is written is the host's administrator's decision, not the browser's.
  kind: z.enum(['backup', 'gc', 'verify']),
  schedule: z.string().trim().min(1).max(200),
  timeZone: ZTimeZone,
  source: z.string().trim().max(200).optional(),
  vmPatterns: z.array(z.string().trim().min(1).max(200)).max(100).default([]),
  retention: ZRetention.default({}),
  rpoHours: z.coerce.number().positive().max(100_000).optional(),
  verifyOutdatedAfterDays: z.coerce.number().min(0).max(36_500).optional(),
  retries: z.coerce.number().int().min(0).max(10).optional(),
  retryDelayMinutes: z.coerce.number().positive().max(24 * 60).optional(),
  verifyBudgetBytes: z.coerce.number().int().positive().max(2 ** 53).optional(),
  verifyMaxBytesPerSecond: z.coerce.number().int().positive().max(2 ** 53).optional(),
  drillVms: z.coerce.number().int().min(0).max(100).optional(),
});
export type TScheduledJobForm = z.infer<typeof ZScheduledJobForm>;

export const ZJobName = z.object({ name: z.string().trim().min(1).max(64) });

export const ZPrune = z.object({ retention: ZRetention, timeZone: ZTimeZone, source: z.string().trim().min(1).max(200).optional(), vms: z.array(z.string().trim().min(1).max(200)).max(1000).optional() });
export type TPrune = z.infer<typeof ZPrune>;
