import { z } from 'zod';

const ZName = z.string().trim().min(1).max(200);

/** A backup of one VM, of one source, or (neither given) of every source. */
export const ZRequestBackup = z.object({ vm: ZName.optional(), source: ZName.optional() });
export type TRequestBackup = z.infer<typeof ZRequestBackup>;
