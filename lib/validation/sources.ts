import path from 'node:path';
import { z } from 'zod';
import { SOURCE_TYPES } from '../engine/sources/types';

/** A source's name: what the dashboard, the CLI and a worker's --sources accept. */
export const SOURCE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SOURCE_NAME_RULE = 'a source name is letters, digits, dots, dashes or underscores (at most 64)';

const ZSourceFields = {
  name: z.string().trim().regex(SOURCE_NAME, SOURCE_NAME_RULE),
  type: z.enum(SOURCE_TYPES),
  // The server's own folder: relative paths would depend on where the server was started. Empty for a libvirt
  // connection (its configs are libvirt's).
  path: z.string().trim().refine((p) => p === '' || path.isAbsolute(p), 'give the folder as an absolute path (starting with /)'),
  /** A live libvirt connection instead of a folder of configs (qemu:///system). */
  uri: z.string().trim().max(200).optional(),
  /** Folders the disks may live in besides `path` (libvirt's standard layout: /var/lib/libvirt/images). */
  storage: z.array(z.string().trim().refine((p) => path.isAbsolute(p), 'give each storage folder as an absolute path (starting with /)')).max(32).optional(),
};

const needsFolderOrUri = (source: { path: string; uri?: string }) => source.path !== '' || !!source.uri;
const FOLDER_OR_URI = { message: 'give the folder of the VM configs, or a libvirt connection (qemu:///system)', path: ['path'] };

export const ZAddSource = z.object(ZSourceFields).refine(needsFolderOrUri, FOLDER_OR_URI);
export type TAddSource = z.infer<typeof ZAddSource>;

export const ZEditSource = z.object({ id: z.uuid(), ...ZSourceFields }).refine(needsFolderOrUri, FOLDER_OR_URI);
export type TEditSource = z.infer<typeof ZEditSource>;

export const ZSourceId = z.object({ id: z.uuid() });
export const ZScanSource = z.object({ source: z.string().trim().min(1) });
