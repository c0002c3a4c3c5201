import { RepositoryError } from '../errors';
import type { DiskFormat, SourceType } from '../sources/types';
import type { ChunkId } from './chunk-id';

/**
 * 2: stored disks hold content only; everything that names or links a disk (file names, format, parent, VMDK CID)
 * is in the backup image's disk entry. 1: stored disks also carried the names of the first disk stored with
 * those bytes (read, never trusted for naming: see `diskFilesOf`).
 */
export const MANIFEST_FORMAT_VERSION = 2;

/** One file of a stored disk, by position; `blocks[i]` is null for an all-zero block (recorded, not stored). */
export type StoredDiskFile = {
  size: number;
  blocks: (ChunkId | null)[];
  /** Format 1 only: the name the first disk stored with these bytes had. */
  name?: string;
};

/** disks/<digest>.json: the bytes of one disk version, addressed by their digest; nothing that names or links. */
export type StoredDiskManifest = {
  formatVersion: number;
  digest: string;
  blockSize: number;
  logicalBytes: number;
  files: StoredDiskFile[];
  createdAt: string;
  /** Format 1 only: the first stored disk's naming and links (never used to name a restored file). */
  format?: DiskFormat;
  parent?: { pointer: string; digest: string };
  vmdk?: VmdkLinks;
};

export type VmdkLinks = { cid: string; parentCid: string; createType: string };

/** One file of a disk as a backup image names it: position i matches the stored disk's files[i]. */
export type DiskFileEntry = {
  /** Relative to the folder of the disk's main file ("disk.qcow2", "disk-flat.vmdk"); files[0] is the main file. */
  name: string;
  /** Permission bits and owner at backup time (restored where the restoring process may set them). */
  mode?: number;
  uid?: number;
  gid?: number;
};

/** A disk as one backup image references it: everything that names and links it, and its stored content. */
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
  /** The stored disk (content). */
  digest: string;
  /** The disk's files, aligned with the stored disk's (absent in format-1 images). */
  files?: DiskFileEntry[];
  /** VMDK: the disk's CID, its parentCID and createType as backed up (absent in format-1 images). */
  vmdk?: VmdkLinks;
  common: boolean;
  /** VMs of the source that used this disk at backup time. */
  usedBy: string[];
  /** The parent link as written in the child (`pointer`) and the parent disk as it was (its stored disk: `digest`). */
  parent?: { pointer: string; path: string; identifier: string; versionToken: string; digest?: string };
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
  /** The source as it was at backup time: `path` is its canonical root then. */
  source: { name: string; type: SourceType; path: string };
  /** `relativeConfigPath`: the config relative to the source root (absent in format-1 images: derive it from
   *  `configPath` and `source.path`). */
  vm: { name: string; uuid: string; configPath: string; relativeConfigPath?: string; configBase64: string };
  disks: BackupDiskEntry[];
  totals: { logicalBytes: number; bytesRead: number; bytesWritten: number; bytesReferenced: number };
};

/** A file to restore: its name from the image's entry, its content from the stored disk. */
export type RestoreFile = DiskFileEntry & { size: number; blocks: (ChunkId | null)[] };

/**
 * The files of one disk entry: names (and modes) from the entry, content from the stored disk. Format-1 images
 * have no names in their entries: the main file is named by the entry's own path, extents by the stored disk
 * (an extent's name is written in the descriptor, which is part of the content, so byte-identical disks agree).
 */
export function diskFilesOf(entry: BackupDiskEntry, stored: StoredDiskManifest): RestoreFile[] {
  if (entry.files && entry.files.length !== stored.files.length) {
    throw new RepositoryError(`disk entry ${entry.relativePath} names ${entry.files.length} files but its stored disk has ${stored.files.length}`);
  }
  return stored.files.map((file, index) => {
    const named = entry.files?.[index] ?? { name: index === 0 ? baseName(entry.path) : file.name ?? '' };
    if (!isRelativeName(named.name)) throw new RepositoryError(`disk entry ${entry.relativePath} has an unusable file name '${named.name}'`);
    return { ...named, size: file.size, blocks: file.blocks };
  });
}

/** The VMDK links of an entry: its own (format 2) or, for format-1 images, the stored disk's (content-derived). */
export function vmdkLinksOf(entry: BackupDiskEntry, stored?: StoredDiskManifest): VmdkLinks | undefined {
  return entry.vmdk ?? stored?.vmdk;
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/** A relative file name (it may go up with `..`: where it lands is checked against the restore's target). */
function isRelativeName(name: string): boolean {
  return name.length > 0 && !name.startsWith('/') && !name.includes('\0');
}
