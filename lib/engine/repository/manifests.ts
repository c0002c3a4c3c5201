import { RepositoryError } from '../errors';
import type { DiskFormat, SourceType } from '../sources/types';
import type { ChunkId } from './chunk-id';

/**
 * 2: stored disks hold content only; everything that names or links a disk (file names, format, parent, VMDK CID)
 * is in the backup image's disk entry. 1: stored disks also carried the names of the first disk stored with
 * those bytes (read, never trusted for naming: see `diskFilesOf`).
 */
export const MANIFEST_FORMAT_VERSION = 2;

/** The VM names an image lists per disk at most (`usedBy`); `usedByCount` tells the rest. */
export const USED_BY_LISTED = 32;

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
  /** VMs of the source that used this disk at backup time: the first USED_BY_LISTED of them (a pool's golden image
   *  has thousands; every image naming them all would grow the repository with the square of the pool). */
  usedBy: string[];
  /** How many VMs used it, where that is more than `usedBy` lists (absent: `usedBy` is complete). */
  usedByCount?: number;
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
  /** A disk of a running domain: the version token its content is also filed under, naming the libvirt checkpoint
   *  taken just before its point in time (backup.ts checkpointToken); the next backup reads only what changed since. */
  changeToken?: string;
};

/** One backup of one VM: a member of an image pack (images/<pack id>.<count>.pack), or images/<id>.json before format 3. */
export type BackupImageManifest = {
  formatVersion: number;
  id: string;
  createdAt: string;
  /** The backup run that made this image (absent in images made before runs were named). */
  runId?: string;
  /** How the VM was held while read (a domain of a live libvirt connection; absent for folder sources, which cannot
   *  tell): `application` (guest agent froze it), `crash` (point in time, no freeze), `offline` (shut off). */
  consistency?: 'application' | 'crash' | 'offline';
  /** A copy made by `vmdedup sync` (sync/README.md): the repository and image it copies. Its disks name this
   *  repository's stored disks (their digests differ where the block ids do). */
  origin?: { repositoryId: string; imageId: string };
  /** The source as it was at backup time: `path` is its canonical root then (the folder relative paths are taken
   *  from). A source with storage folders also records its config folder and storage folders (canonical): `path`
   *  is then the deepest folder holding them all, and a catalog rebuilt from the repository gets them back. `uri`:
   *  the libvirt connection the source was read through (its `configFolder` is libvirt's folder of domain XML). */
  source: { name: string; type: SourceType; path: string; configFolder?: string; storage?: string[]; uri?: string };
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
    throw new RepositoryError(`disk entry ${entry.relativePath} is damaged: it names ${entry.files.length} files but its stored disk has ${stored.files.length}`);
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

/**
 * A backup-image manifest as read (untrusted JSON): refused as damaged unless it has the shape restores rely on,
 * names only files that stay below their folder (relative, no `..` out of the source root, no NUL), and
 * permission bits and owners that are ones. A manifest vmdedup wrote always passes.
 */
export function parseBackupImage(value: unknown, what: string, id: string): BackupImageManifest {
  const damaged = (why: string) => new RepositoryError(`${what} is damaged: ${why}`);
  const image = objectOf(value, 'the manifest', damaged);
  if (typeof image.formatVersion !== 'number') throw damaged('no formatVersion');
  // The id names folders (restored-<id>/) and markers: it is the one the manifest is filed under.
  if (image.id !== id) throw damaged(`it holds the manifest of ${JSON.stringify(image.id)}`);
  if (Number.isNaN(Date.parse(stringOf(image.createdAt, 'createdAt', damaged)))) throw damaged('createdAt is not a time');
  if (image.consistency !== undefined && !['application', 'crash', 'offline'].includes(image.consistency as string)) throw damaged(`consistency '${String(image.consistency)}' is unknown`);
  if (image.origin !== undefined) {
    const origin = objectOf(image.origin, 'origin', damaged);
    stringOf(origin.repositoryId, 'origin.repositoryId', damaged);
    stringOf(origin.imageId, 'origin.imageId', damaged);
  }
  const source = objectOf(image.source, 'source', damaged);
  stringOf(source.name, 'source.name', damaged);
  if (source.type !== 'libvirt' && source.type !== 'vmware') throw damaged(`source.type '${String(source.type)}' is unknown`);
  absolutePathOf(source.path, 'source.path', damaged);
  if (source.configFolder !== undefined) absolutePathOf(source.configFolder, 'source.configFolder', damaged);
  if (source.uri !== undefined) stringOf(source.uri, 'source.uri', damaged);
  if (source.storage !== undefined) {
    if (!Array.isArray(source.storage)) throw damaged('source.storage is not a list');
    source.storage.forEach((dir, index) => absolutePathOf(dir, `source.storage[${index}]`, damaged));
  }
  const vm = objectOf(image.vm, 'vm', damaged);
  stringOf(vm.name, 'vm.name', damaged);
  if (typeof vm.uuid !== 'string') throw damaged('vm.uuid is not a string');
  absolutePathOf(vm.configPath, 'vm.configPath', damaged);
  if (typeof vm.configBase64 !== 'string') throw damaged('vm.configBase64 is not a string');
  relativePathOf(vm.relativeConfigPath ?? relativeTo(source.path as string, vm.configPath as string), 'vm.relativeConfigPath', damaged);
  if (!Array.isArray(image.disks)) throw damaged('disks is not a list');
  image.disks.forEach((value, index) => {
    const disk = objectOf(value, `disks[${index}]`, damaged);
    const field = (name: string) => `disks[${index}].${name}`;
    for (const name of ['identifier', 'versionToken']) stringOf(disk[name], field(name), damaged);
    absolutePathOf(disk.path, field('path'), damaged);
    relativePathOf(disk.relativePath, field('relativePath'), damaged);
    if (disk.via !== 'attached' && disk.via !== 'parent') throw damaged(`${field('via')} is neither attached nor parent`);
    for (const name of ['slot', 'target']) if (disk[name] !== undefined && typeof disk[name] !== 'string') throw damaged(`${field(name)} is not a string`);
    if (disk.format !== 'raw' && disk.format !== 'qcow2' && disk.format !== 'vmdk') throw damaged(`${field('format')} '${String(disk.format)}' is unknown`);
    digestOf(disk.digest, field('digest'), damaged);
    if (typeof disk.common !== 'boolean') throw damaged(`${field('common')} is not true or false`);
    if (!Array.isArray(disk.usedBy) || disk.usedBy.some((name) => typeof name !== 'string')) throw damaged(`${field('usedBy')} is not a list of names`);
    if (disk.usedByCount !== undefined && (!Number.isSafeInteger(disk.usedByCount) || (disk.usedByCount as number) < disk.usedBy.length)) throw damaged(`${field('usedByCount')} is not a count of at least the names usedBy lists`);
    for (const name of ['logicalBytes', 'bytesRead', 'bytesWritten']) countOf(disk[name], field(name), damaged);
    if (disk.files !== undefined) {
      if (!Array.isArray(disk.files) || disk.files.length === 0) throw damaged(`${field('files')} is not a list of files`);
      disk.files.forEach((value, fileIndex) => {
        const file = objectOf(value, `${field('files')}[${fileIndex}]`, damaged);
        const fileField = (name: string) => `${field('files')}[${fileIndex}].${name}`;
        if (typeof file.name !== 'string' || !isRelativeName(file.name)) throw damaged(`${fileField('name')} is not a relative file name`);
        if (file.mode !== undefined && !(Number.isInteger(file.mode) && (file.mode as number) >= 0 && (file.mode as number) <= 0o7777)) throw damaged(`${fileField('mode')} is not a permission mode`);
        for (const id of ['uid', 'gid']) {
          if (file[id] !== undefined && !(Number.isInteger(file[id]) && (file[id] as number) >= 0 && (file[id] as number) < 2 ** 32 - 1)) throw damaged(`${fileField(id)} is not an owner id`);
        }
      });
      // The main file's name is said twice (its entry's path and files[0]): they agree in every manifest written.
      if ((disk.files[0] as DiskFileEntry).name !== baseName(disk.relativePath as string)) throw damaged(`${field('files')}[0].name is not the name of ${field('relativePath')}`);
    }
    if (disk.vmdk !== undefined) {
      const vmdk = objectOf(disk.vmdk, field('vmdk'), damaged);
      for (const name of ['cid', 'parentCid', 'createType']) if (typeof vmdk[name] !== 'string') throw damaged(`${field('vmdk')}.${name} is not a string`);
    }
    if (disk.parent !== undefined) {
      const parent = objectOf(disk.parent, field('parent'), damaged);
      for (const name of ['pointer', 'identifier', 'versionToken']) if (typeof parent[name] !== 'string' || (parent[name] as string).includes('\0')) throw damaged(`${field('parent')}.${name} is not a string`);
      absolutePathOf(parent.path, `${field('parent')}.path`, damaged);
      if (parent.digest !== undefined) digestOf(parent.digest, `${field('parent')}.digest`, damaged);
    }
  });
  objectOf(image.totals, 'totals', damaged);
  return value as BackupImageManifest;
}

/** A block size vmdedup works with: a power of two from 512 B to 16 MiB, of which a restore can hold 32 blocks in memory (the default is 1 MiB). */
export function isBlockSize(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 512 && (value as number) <= 16 * 2 ** 20 && ((value as number) & ((value as number) - 1)) === 0;
}

/** A stored-disk manifest as read: the shape restores rely on, block lists that cover each file, the digest asked for. */
export function parseStoredDisk(value: unknown, what: string, digest: string): StoredDiskManifest {
  const damaged = (why: string) => new RepositoryError(`${what} is damaged: ${why}`);
  const stored = objectOf(value, 'the manifest', damaged);
  if (typeof stored.formatVersion !== 'number') throw damaged('no formatVersion');
  if (stored.digest !== digest) throw damaged(`it holds the manifest of ${String(stored.digest).slice(0, 12)}`);
  const blockSize = stored.blockSize as number;
  if (!isBlockSize(blockSize)) throw damaged(`block size ${String(stored.blockSize)} is not one`);
  countOf(stored.logicalBytes, 'logicalBytes', damaged);
  if (!Array.isArray(stored.files) || stored.files.length === 0) throw damaged('files is not a list of files');
  stored.files.forEach((value, index) => {
    const file = objectOf(value, `files[${index}]`, damaged);
    countOf(file.size, `files[${index}].size`, damaged);
    if (!Array.isArray(file.blocks) || file.blocks.length !== Math.ceil((file.size as number) / blockSize)) throw damaged(`files[${index}] does not list one block per ${blockSize} bytes`);
    if (file.blocks.some((id) => id !== null && !(typeof id === 'string' && /^[0-9a-f]{64}$/.test(id)))) throw damaged(`files[${index}] lists something that is not a block id`);
    if (file.name !== undefined && typeof file.name !== 'string') throw damaged(`files[${index}].name is not a string`);
  });
  return value as StoredDiskManifest;
}

type Damaged = (why: string) => RepositoryError;

function objectOf(value: unknown, what: string, damaged: Damaged): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw damaged(`${what} is not an object`);
  return value as Record<string, unknown>;
}

function stringOf(value: unknown, what: string, damaged: Damaged): string {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0')) throw damaged(`${what} is not a name`);
  return value;
}

function absolutePathOf(value: unknown, what: string, damaged: Damaged): void {
  if (!stringOf(value, what, damaged).startsWith('/')) throw damaged(`${what} is not an absolute path`);
}

/** A path below the source root (as every disk and config of a source is): relative, never going up out of it. */
function relativePathOf(value: unknown, what: string, damaged: Damaged): void {
  const text = stringOf(value, what, damaged);
  const normal = text.split('/').filter((part) => part !== '' && part !== '.');
  let depth = 0;
  for (const part of normal) {
    depth += part === '..' ? -1 : 1;
    if (depth < 0) break;
  }
  if (text.startsWith('/') || normal.length === 0 || depth <= 0 || normal[normal.length - 1] === '..') throw damaged(`${what} '${text}' does not name a file below the source root`);
}

function digestOf(value: unknown, what: string, damaged: Damaged): void {
  if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) throw damaged(`${what} is not a digest`);
}

function countOf(value: unknown, what: string, damaged: Damaged): void {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw damaged(`${what} is not a byte count`);
}

function relativeTo(root: string, file: string): string {
  return file.startsWith(`${root}/`) ? file.slice(root.length + 1) : file;
}
