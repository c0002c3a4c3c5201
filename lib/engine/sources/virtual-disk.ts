import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isInside } from '../containment';
import { InputError, fileError } from '../errors';
import { detectDiskFormat } from '../formats/detect';
import { readQcow2Header } from '../formats/qcow2';
import { readVmdkDescriptor } from '../formats/vmdk';
import { statDiskFile, withDiskHeader } from './files';
import type { DiskHeader, ScanMemo } from './scan-memo';
import type { DiskFormat, DiskSlot, ScanProblem } from './types';
import { type FileOwnership, versionOf } from './version-token';

/** One disk image as found in a source: its files, identity, version and parent link. */
export type VirtualDisk = {
  /** Canonical real path of the disk's main file (the key of the disk within a scan). */
  path: string;
  relativePath: string;
  format: DiskFormat;
  identifier: string;
  versionToken: string;
  /** The version token was taken too soon after the disk's last change to be trusted later (see versionOf). */
  racilyClean: boolean;
  /** Each file's mode and owner, from the same stats as the version token. */
  ownership: FileOwnership[];
  /** Every file the disk consists of, main file first (VMDK extents follow their descriptor). */
  files: string[];
  logicalBytes: number;
  virtualSize?: number;
  /** The child's link to its parent: the name as written in the image, the parent's canonical path, and the
   *  parent's format where the child names it (qcow2 backing format extension). */
  parent?: { pointer: string; path: string; format?: DiskFormat };
  vmdk?: { cid: string; parentCid: string; createType: string; longContentId?: string };
};

const MAX_CHAIN_DEPTH = 256;

/** Where a source's disks may be (`areas`, canonical folders; nothing outside them is read) and the folder their
 *  relative names are taken from (`base`: the deepest folder that holds every area). */
export type DiskAreas = { base: string; areas: string[] };

/** Reads the disks of one source, each once, keyed by its canonical path. */
export class DiskResolver {
  readonly disks = new Map<string, VirtualDisk>();
  private readonly slotIds = new Map<string, Set<string>>();
  private readonly reads = new Map<string, Promise<VirtualDisk>>();
  private readonly realpaths = new Map<string, Promise<string>>();
  /** Folders resolved this scan (realpathOf). */
  private readonly folders = new Map<string, string>();
  /** Devices whose filesystem is local (statDiskFile trusts their lstat), asked once a scan. */
  private readonly localDevices = new Map<bigint, boolean>();

  private readonly root: string;
  private readonly areas: string[];

  constructor(layout: DiskAreas, private readonly memo?: ScanMemo) {
    this.root = layout.base;
    this.areas = layout.areas;
  }

  /** Whether a canonical path lies in one of the source's folders. */
  private allowed(real: string): boolean {
    return this.areas.some((area) => isInside(area, real));
  }

  /** Resolves a disk and its parents; returns canonical paths, the attached disk first. */
  async resolveChain(diskPath: string, format: DiskFormat | undefined, referrer: string): Promise<string[]> {
    const chain: string[] = [];
    let next: { path: string; format?: DiskFormat; referrer: string; child?: VirtualDisk } | undefined = { path: diskPath, format, referrer };
    while (next) {
      const canonical = await this.canonical(next.path, next.referrer);
      // A parent link as written may go through `..` or symlinks: disks are keyed by their canonical path.
      if (next.child?.parent) next.child.parent.path = canonical;
      if (chain.includes(canonical)) {
        throw new InputError(`parent chain loops: ${[...chain, canonical].map((p) => path.relative(this.root, p)).join(' -> ')}`, { file: chain[0] });
      }
      if (chain.length >= MAX_CHAIN_DEPTH) throw new InputError(`parent chain deeper than ${MAX_CHAIN_DEPTH}`, { file: chain[0] });
      chain.push(canonical);
      const known = this.disks.get(canonical);
      // One file read as two formats (raw by one VM, qcow2 by another) would give one VM the other's parent chain.
      if (known && next.format && known.format !== next.format) {
        throw new InputError(`named as ${next.format} here (by ${path.relative(this.root, next.referrer) || next.referrer}) but as ${known.format} elsewhere in the source`, { file: canonical });
      }
      const disk: VirtualDisk = known ?? (await this.readOnce(canonical, next.format));
      this.disks.set(canonical, disk);
      next = disk.parent ? { path: disk.parent.path, format: disk.parent.format, referrer: canonical, child: disk } : undefined;
    }
    return chain;
  }

  noteSlotIdentity(diskPath: string, slot: DiskSlot): void {
    const id = slot.wwn ? `wwn:${slot.wwn}` : slot.serial ? `serial:${slot.serial}` : undefined;
    if (!id) return;
    const ids = this.slotIds.get(diskPath) ?? new Set();
    ids.add(id);
    this.slotIds.set(diskPath, ids);
  }

  /**
   * One rule for every disk GUID (VMDK ddb.uuid, libvirt wwn and serial): a GUID names one file. The disk's own
   * ddb.uuid wins over what a config says; a GUID claimed for two files (a copied VM folder), or a file given two
   * GUIDs by its VMs, is ambiguous: those files are identified by their paths (kept apart, still backed up), and
   * the line is a problem of the run (exit 2) until the admin gives each disk its own.
   */
  assignIdentifiers(): ScanProblem[] {
    const problems: ScanProblem[] = [];
    const claimed = new Map<string, string>(); // disk path → GUID
    for (const disk of this.disks.values()) if (disk.identifier.startsWith('vmdk-uuid:')) claimed.set(disk.path, disk.identifier);
    for (const [diskPath, ids] of this.slotIds) {
      if (claimed.has(diskPath)) continue;
      if (ids.size > 1) {
        problems.push({ message: `${diskPath}: VMs give this disk different identifiers (${[...ids].join(', ')}); it is backed up under its path (give it one wwn/serial in every config)`, disks: [diskPath] });
        continue;
      }
      claimed.set(diskPath, [...ids][0]);
    }
    const pathsById = new Map<string, string[]>();
    for (const [diskPath, id] of claimed) pathsById.set(id, [...(pathsById.get(id) ?? []), diskPath]);
    for (const [id, paths] of pathsById) {
      if (paths.length > 1) {
        const fix = id.startsWith('vmdk-uuid:') ? 'a copied VM folder? give the copy a new ddb.uuid' : 'give each disk its own wwn/serial';
        problems.push({ message: `identifier ${id} is given to ${paths.length} disk files (${paths.join(', ')}); each is backed up under its path (${fix})`, disks: paths });
        for (const diskPath of paths) {
          const disk = this.disks.get(diskPath);
          if (disk) disk.identifier = `path:${disk.relativePath}`;
        }
        continue;
      }
      const disk = this.disks.get(paths[0]);
      if (disk) disk.identifier = id;
    }
    return problems;
  }

  /**
   * Reads a disk and its parents ahead of resolveChain, many at once (the scan's I/O waits overlap). Only the reads
   * are shared: resolveChain still decides, one VM after another, what the scan says, so the result and its errors
   * are those of a sequential scan. A failure here is left for resolveChain to meet (or not).
   */
  prefetch(diskPath: string, format: DiskFormat | undefined): Promise<void> {
    const walk = async (file: string, hint: DiskFormat | undefined, depth: number): Promise<void> => {
      if (depth > MAX_CHAIN_DEPTH) return;
      const real = await this.realpath(file).catch(() => undefined);
      if (!real || !this.allowed(real)) return;
      const disk = await this.readOnce(real, hint).catch(() => undefined);
      if (disk?.parent) await walk(disk.parent.path, disk.parent.format, depth + 1);
    };
    return walk(diskPath, format, 0);
  }

  /** One realpath per name in a scan (thousands of clones name one golden image and one profile disk). */
  realpath(file: string): Promise<string> {
    let real = this.realpaths.get(file);
    if (!real) {
      // Synchronously: one per disk of thousands, where the thread pool's round trip is the cost.
      real = new Promise((resolve) => resolve(this.realpathOf(file)));
      real.catch(() => undefined); // met by the caller that needs it
      this.realpaths.set(file, real);
    }
    return real;
  }

  /**
   * A file's canonical path: its folder's (resolved once per scan: a pool's overlays share a few folders) and its
   * own name, when that name is not a symlink; libc's realpath otherwise. One lstat per disk, where realpath makes
   * one per component of the path.
   */
  private realpathOf(file: string): string {
    const name = path.basename(file);
    // A trailing slash asks for a folder (libc: ENOTDIR for a file), which path.basename would drop.
    if (!path.isAbsolute(file) || file.endsWith('/') || name === '' || name === '.' || name === '..') return fsSync.realpathSync.native(file);
    const dir = path.dirname(file);
    let realDir = this.folders.get(dir);
    if (realDir === undefined) {
      realDir = fsSync.realpathSync.native(dir);
      this.folders.set(dir, realDir);
    }
    const candidate = path.join(realDir, name);
    return fsSync.lstatSync(candidate).isSymbolicLink() ? fsSync.realpathSync.native(file) : candidate;
  }

  /** One read per file and format claim, shared by prefetch and resolveChain. */
  private readOnce(canonical: string, hint: DiskFormat | undefined): Promise<VirtualDisk> {
    const key = `${hint ?? ''}\0${canonical}`;
    let read = this.reads.get(key);
    if (!read) {
      read = this.readDisk(canonical, hint);
      read.catch(() => undefined); // met by resolveChain if it gets there; a prefetch alone must not crash the scan
      this.reads.set(key, read);
    }
    return read;
  }

  private async canonical(diskPath: string, referrer: string): Promise<string> {
    let real: string;
    try {
      real = await this.realpath(diskPath);
    } catch (err) {
      const problem = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'disk file not found' : fileError(diskPath, err).message.split(': ').pop();
      throw new InputError(`${problem} (named by ${path.relative(this.root, referrer) || referrer})`, { file: diskPath });
    }
    if (!this.allowed(real)) {
      const lexically = this.areas.some((area) => isInside(area, path.resolve(diskPath)));
      const where = this.areas.length === 1 ? `the source root ${this.areas[0]}` : `the source's folders (${this.areas.join(', ')})`;
      throw new InputError(`${lexically ? 'symlink leads outside' : 'disk path is outside'} ${where}`, { file: diskPath });
    }
    return real;
  }

  private async readDisk(canonical: string, hint: DiskFormat | undefined): Promise<VirtualDisk> {
    const relativePath = path.relative(this.root, canonical);
    const base = { path: canonical, relativePath, identifier: `path:${relativePath}` };
    const files = [canonical];
    if (this.memo?.knowsHeader(canonical, hint)) {
      // A qcow2 or raw header read last scan under this very fstat (scan-memo.ts): not read again.
      const probed = await statDiskFile(canonical, this.localDevices);
      const known = this.memo.header(canonical, hint, probed.stat);
      if (known) return { ...base, ...known, files, ...(await versionOf(files, undefined, { file: canonical, ...probed })) };
    }
    return withDiskHeader(canonical, async (fh, stat, statAtNs) => {
      const opened = { file: canonical, stat, statAtNs };
      const detected = await detectDiskFormat(fh, canonical);
      // A config that says raw is honoured as raw, whatever the bytes (as the hypervisor reads it: a guest may write
      // anything, a qcow2 header too, into its raw disk); any other claim must match the bytes.
      const format = hint === 'raw' ? 'raw' : hint ?? detected;
      if (format !== 'raw' && format !== detected) throw new InputError(`config says ${format} but the file is ${detected === 'raw' ? 'not a valid ' + format + ' image' : detected}`, { file: canonical });
      const remember = (header: DiskHeader) => {
        this.memo?.rememberHeader(canonical, hint, stat, statAtNs, header);
        return header;
      };
      if (format === 'qcow2') {
        const header = await readQcow2Header(fh, canonical);
        const parent = header.backingFile ? { ...this.parentLink(header.backingFile, canonical), format: knownFormat(header.backingFormat) } : undefined;
        return { ...base, ...remember({ format, parent, virtualSize: header.virtualSize }), files, ...(await versionOf(files, undefined, opened)) };
      }
      if (format === 'vmdk') {
        const descriptor = await readVmdkDescriptor(fh, canonical);
        for (const extent of descriptor.extents) {
          if (!extent.file) continue;
          const extentPath = await this.canonical(path.resolve(path.dirname(canonical), extent.file), canonical);
          if (!files.includes(extentPath)) files.push(extentPath);
        }
        const parent = descriptor.parentFileNameHint ? this.parentLink(descriptor.parentFileNameHint, canonical) : undefined;
        const identifier = descriptor.ddbUuid ? `vmdk-uuid:${descriptor.ddbUuid.replace(/[^0-9a-f]/gi, '').toLowerCase()}` : base.identifier;
        return {
          ...base, format, identifier, files, parent,
          virtualSize: descriptor.extents.reduce((sum, e) => sum + e.sectors * 512, 0),
          vmdk: { cid: descriptor.cid, parentCid: descriptor.parentCid, createType: descriptor.createType, longContentId: descriptor.longContentId },
          ...(await versionOf(files, descriptor.cid, opened)),
        };
      }
      return { ...base, ...remember({ format, virtualSize: Number(stat.size) }), files, ...(await versionOf(files, undefined, opened)) };
    });
  }

  private parentLink(pointer: string, child: string): { pointer: string; path: string } {
    if (/^[a-z][a-z0-9+.-]*:/i.test(pointer) && !pointer.startsWith('/')) {
      throw new InputError(`parent '${pointer}' is not a file path (protocol and json: backing files are not supported)`, { file: child });
    }
    return { pointer, path: path.resolve(path.dirname(child), pointer) };
  }
}

function knownFormat(format: string | undefined): DiskFormat | undefined {
  return format === 'raw' || format === 'qcow2' || format === 'vmdk' ? format : undefined;
}

/** Reads one disk (and its parent chain) as it is now; undefined when its file no longer exists. */
export async function inspectDisk(layout: DiskAreas, diskPath: string, format?: DiskFormat): Promise<{ disk: VirtualDisk; chain: VirtualDisk[] } | undefined> {
  if (!(await fs.access(diskPath).then(() => true, () => false))) return undefined;
  const resolver = new DiskResolver(layout);
  const paths = await resolver.resolveChain(diskPath, format, diskPath);
  const chain = paths.map((p) => resolver.disks.get(p)!);
  return { disk: chain[0], chain };
}
