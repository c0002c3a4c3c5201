import type { DiskFormat, SourceType } from '../sources/types';
import type { ChunkId } from './chunk-id';

export const MANIFEST_FORMAT_VERSION = 1;

/** One file of a stored disk; `blocks[i]` is null for an all-zero block (recorded, not stored). */
export type StoredDiskFile = {
  /** Path relative to the folder of the disk's main file ("disk.qcow2", "disk-flat.vmdk"). */
  name: string;
  size: number;
  blocks: (ChunkId | null)[];
};

/** disks/<digest>.json: one version of one disk's bytes, self-contained. */
export type StoredDiskManifest = {
  formatVersion: number;
  digest: string;
  format: DiskFormat;
  blockSize: number;
  logicalBytes: number;
  files: StoredDiskFile[];
  /** The parent link inside the image (qcow2 backing file, VMDK parentFileNameHint) and the parent's stored copy. */
  parent?: { pointer: string; digest: string };
  vmdk?: { cid: string; parentCid: string; createType: string };
  createdAt: string;
};

/** A disk as one backup image references it: the pointer as it was, and the stored copy. */
export type BackupDiskEntry = {
  identifier: string;
  /** Canonical absolute path at backup time, and the same relative to the source root. */
  path: string;
  relativePath: string;
  via: 'attached' | 'parent';
  /** For attached disks: the config slot and the target exactly as the config wrote it. */
  slot?: string;
  target?: string;
  format: DiskFormat;
  versionToken: string;
  digest: string;
  common: boolean;
  /** VMs of the source that used this disk at backup time. */
  usedBy: string[];
  parent?: { pointer: string; path: string; identifier: string; versionToken: string };
  action: 'stored' | 'referenced';
  logicalBytes: number;
  bytesRead: number;
  bytesWritten: number;
  /** Fast-path trust (absent in older images): when the content behind `digest` was last read from the disk (this
   *  run, or the run whose read this one referenced), and whether `versionToken` was taken too soon after a change
   *  to be trusted by a later run (racily clean). The catalog's fast path is rebuilt from these. */
  readAt?: string;
  racilyClean?: boolean;
};

/** images/<id>.json: one backup of one VM. */
export type BackupImageManifest = {
  formatVersion: number;
  id: string;
  createdAt: string;
  /** The backup run that made this image (absent in images made before runs were named). */
  runId?: string;
  source: { name: string; type: SourceType; path: string };
  vm: { name: string; uuid: string; configPath: string; configBase64: string };
  disks: BackupDiskEntry[];
  totals: { logicalBytes: number; bytesRead: number; bytesWritten: number; bytesReferenced: number };
};
