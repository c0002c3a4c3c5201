import path from 'node:path';
import { z } from 'zod';
import { SOURCE_TYPES } from '../engine/sources/types';

const ZSourceFields = {
  name: z.string().trim().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a source name is letters, digits, dots, dashes or underscores (at most 64)'),
  type: z.enum(SOURCE_TYPES),
  // The server's own folder: relative paths would depend on where the server was started.
  path: z.string().trim().refine((p) => path.isAbsolute(p), 'give the folder as an absolute path (starting with /)'),
  /** Folders the disks may live in besides `path` (libvirt's standard layout: /var/lib/libvirt/images). */
  storage: z.array(z.string().trim().refine((p) => path.isAbsolute(p), 'give each storage folder as an absolute path (starting with /)')).max(32).optional(),
};

export const ZAddSource = z.object(ZSourceFields);
export type TAddSource = z.infer<typeof ZAddSource>;

export const ZEditSource = z.object({ id: z.uuid(), ...ZSourceFields });
export type TEditSource = z.infer<typeof ZEditSource>;

export const ZSourceId = z.object({ id: z.uuid() });
export const ZScanSource = z.object({ source: z.string().trim().min(1) });
