import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { InputError, fileError } from '../errors';
import { QCOW2_MAGIC, readQcow2Header } from '../formats/qcow2';
import { VMDK_SPARSE_MAGIC, readVmdkDescriptor } from '../formats/vmdk';
import { parseLibvirtDomain } from './libvirt';
import type { DiskFormat, DiskSlot, SourceSpec, VmConfig } from './types';
import { parseVmx } from './vmware';

/** One disk image as found in a source: its files, identity, version and parent link. */
export type VirtualDisk = {
  /** Canonical real path of the disk's main file (the key of the disk within a scan). */
  path: string;
  relativePath: string;
  format: DiskFormat;
  identifier: string;
  versionToken: string;
  /** Every file the disk consists of, main file first (VMDK extents follow their descriptor). */
  files: string[];
  logicalBytes: number;
  virtualSize?: number;
  /** The child's link to its parent: the name as written in the image, the parent's canonical path, and the
   *  parent's format where the child names it (qcow2 backing format extension). */
  parent?: { pointer: string; path: string; format?: DiskFormat };
  vmdk?: { cid: string; parentCid: string; createType: string; longContentId?: string };
};

export type VmDiskUse = {
  diskPath: string;
  via: 'attached' | 'parent';
  /** For attached disks: the config slot and the path as the config writes it. */
  slot?: string;
  target?: string;
};

export type VmInventory = {
  name: string;
  uuid: string;
  configPath: string;
  config?: VmConfig;
  slots: DiskSlot[];
  disks: VmDiskUse[];
  /** Set when the VM cannot be backed up: one line saying what and where. */
  error?: string;
};

export type SourceInventory = {
  source: SourceSpec;
  root: string;
  vms: VmInventory[];
  disks: Map<string, VirtualDisk>;
  /** disk path → names of the VMs that use it, directly or through a parent chain. */
  usedBy: Map<string, string[]>;
  warnings: string[];
};

const MAX_CHAIN_DEPTH = 256;
const CONFIG_EXTENSION = { libvirt: '.xml', vmware: '.vmx' } as const;

/** Reads every VM of a source and resolves its disks and their parent chains. Reads headers only. */
export async function scanSource(source: SourceSpec, options: { signal?: AbortSignal } = {}): Promise<SourceInventory> {
  const root = await sourceRoot(source.path);
  const configFiles = await findFiles(root, CONFIG_EXTENSION[source.type]);
  const resolver = new DiskResolver(root);
  const vms: VmInventory[] = [];
  for (const configPath of configFiles) {
    options.signal?.throwIfAborted();
    const vm = await scanVm(source, configPath, resolver);
    if (vm) vms.push(vm);
  }
  const warnings = resolver.assignIdentifiers();
  const usedBy = new Map<string, string[]>();
  for (const vm of vms) {
    if (vm.error) continue;
    for (const use of vm.disks) {
      const users = usedBy.get(use.diskPath) ?? [];
      if (!users.includes(vm.name)) users.push(vm.name);
      usedBy.set(use.diskPath, users);
    }
  }
  const names = new Map<string, number>();
  for (const vm of vms) names.set(vm.name, (names.get(vm.name) ?? 0) + 1);
  for (const [name, count] of names) {
    if (count > 1) warnings.push(`${count} VMs in source '${source.name}' are named '${name}'; select them by config file`);
  }
  return { source, root, vms, disks: resolver.disks, usedBy, warnings };
}

export async function sourceRoot(dir: string): Promise<string> {
  let real: string;
  try {
    real = await fs.realpath(dir);
  } catch (err) {
    throw new InputError(`source folder does not exist or cannot be read (${fileError(dir, err).message.split(': ').pop()})`, { file: dir });
  }
  const stat = await fs.stat(real);
  if (!stat.isDirectory()) throw new InputError('source path is not a folder', { file: dir });
  return real;
}

async function findFiles(root: string, extension: string): Promise<string[]> {
  const found: string[] = [];
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    if (entry.isFile() && entry.name.toLowerCase().endsWith(extension) && !entry.name.startsWith('.')) {
      found.push(path.join(entry.parentPath, entry.name));
    }
  }
  return found.sort();
}

/** Returns undefined for well-formed XML that is not a domain (network definitions…). */
async function scanVm(source: SourceSpec, configPath: string, resolver: DiskResolver): Promise<VmInventory | undefined> {
  const fallbackName = path.basename(configPath).replace(/\.[^.]+$/, '');
  let config: VmConfig | undefined;
  try {
    const bytes = await fs.readFile(configPath).catch((err) => { throw fileError(configPath, err); });
    config = source.type === 'libvirt' ? parseLibvirtDomain(configPath, bytes) : parseVmx(configPath, bytes);
    if (!config) return undefined;
    const disks: VmDiskUse[] = [];
    for (const slot of config.slots) {
      if (!slot.backedUp || !slot.path) continue;
      const chain = await resolver.resolveChain(slot.path, slot.format, configPath);
      disks.push({ diskPath: chain[0], via: 'attached', slot: slot.slot, target: slot.target });
      for (const parent of chain.slice(1)) {
        if (!disks.some((d) => d.diskPath === parent)) disks.push({ diskPath: parent, via: 'parent' });
      }
      resolver.noteSlotIdentity(chain[0], slot);
    }
    return { name: config.name, uuid: config.uuid, configPath, config, slots: config.slots, disks };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return { name: config?.name ?? fallbackName, uuid: config?.uuid ?? '', configPath, config, slots: config?.slots ?? [], disks: [], error: err.message };
  }
}

class DiskResolver {
  readonly disks = new Map<string, VirtualDisk>();
  private readonly slotIds = new Map<string, Set<string>>();

  constructor(private readonly root: string) {}

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
      const disk: VirtualDisk = this.disks.get(canonical) ?? (await this.readDisk(canonical, next.format));
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

  /** Config-given GUIDs (wwn, serial) win over paths; an ambiguous one falls back to the path, with a warning. */
  assignIdentifiers(): string[] {
    const warnings: string[] = [];
    const pathsById = new Map<string, string[]>();
    for (const [diskPath, ids] of this.slotIds) {
      if (ids.size > 1) {
        warnings.push(`${diskPath}: VMs give this disk different identifiers (${[...ids].join(', ')}); using its path`);
        continue;
      }
      const [id] = ids;
      pathsById.set(id, [...(pathsById.get(id) ?? []), diskPath]);
    }
    for (const [id, paths] of pathsById) {
      if (paths.length > 1) {
        warnings.push(`identifier ${id} is given to ${paths.length} different disk files; using their paths`);
        continue;
      }
      const disk = this.disks.get(paths[0]);
      if (disk && !disk.identifier.startsWith('vmdk-uuid:')) disk.identifier = id;
    }
    return warnings;
  }

  private async canonical(diskPath: string, referrer: string): Promise<string> {
    let real: string;
    try {
      real = await fs.realpath(diskPath);
    } catch (err) {
      const problem = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'disk file not found' : fileError(diskPath, err).message.split(': ').pop();
      throw new InputError(`${problem} (named by ${path.relative(this.root, referrer) || referrer})`, { file: diskPath });
    }
    if (!isInside(this.root, real)) {
      const why = isInside(this.root, path.resolve(diskPath)) ? 'symlink leads outside the source root' : 'disk path is outside the source root';
      throw new InputError(`${why} ${this.root}`, { file: diskPath });
    }
    return real;
  }

  private async readDisk(canonical: string, hint: DiskFormat | undefined): Promise<VirtualDisk> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(canonical, 'r');
    } catch (err) {
      throw fileError(canonical, err);
    }
    try {
      const stat = await fh.stat();
      if (!stat.isFile()) throw new InputError('disk is not a regular file', { file: canonical });
      const magic = Buffer.alloc(4);
      await fh.read(magic, 0, 4, 0);
      const detected: DiskFormat =
        stat.size >= 4 && magic.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2'
        : stat.size >= 4 && magic.readUInt32LE(0) === VMDK_SPARSE_MAGIC ? 'vmdk'
        : magic.toString('latin1', 0, 1) === '#' && canonical.toLowerCase().endsWith('.vmdk') ? 'vmdk'
        : 'raw';
      // A config that says raw is honoured as raw (as the hypervisor would); any other claim must match the bytes.
      const format = hint === 'raw' ? 'raw' : hint ?? detected;
      if (format !== detected) throw new InputError(`config says ${format} but the file is ${detected === 'raw' ? 'not a valid ' + format + ' image' : detected}`, { file: canonical });
      const relativePath = path.relative(this.root, canonical);
      const base = { path: canonical, relativePath, format, identifier: `path:${relativePath}` };
      if (format === 'qcow2') {
        const header = await readQcow2Header(fh, canonical);
        const parent = header.backingFile ? { ...this.parentLink(header.backingFile, canonical), format: knownFormat(header.backingFormat) } : undefined;
        const files = [canonical];
        return { ...base, files, parent, virtualSize: header.virtualSize, ...(await versionOf(files)) };
      }
      if (format === 'vmdk') {
        const descriptor = await readVmdkDescriptor(fh, canonical);
        const files = [canonical];
        for (const extent of descriptor.extents) {
          if (!extent.file) continue;
          const extentPath = await this.canonical(path.resolve(path.dirname(canonical), extent.file), canonical);
          if (!files.includes(extentPath)) files.push(extentPath);
        }
        const parent = descriptor.parentFileNameHint ? this.parentLink(descriptor.parentFileNameHint, canonical) : undefined;
        const identifier = descriptor.ddbUuid ? `vmdk-uuid:${descriptor.ddbUuid.replace(/[^0-9a-f]/gi, '').toLowerCase()}` : base.identifier;
        return {
          ...base, identifier, files, parent,
          virtualSize: descriptor.extents.reduce((sum, e) => sum + e.sectors * 512, 0),
          vmdk: { cid: descriptor.cid, parentCid: descriptor.parentCid, createType: descriptor.createType, longContentId: descriptor.longContentId },
          ...(await versionOf(files, descriptor.cid)),
        };
      }
      const files = [canonical];
      return { ...base, files, virtualSize: stat.size, ...(await versionOf(files)) };
    } finally {
      await fh.close();
    }
  }

  private parentLink(pointer: string, child: string): { pointer: string; path: string } {
    if (/^[a-z][a-z0-9+.-]*:/i.test(pointer) && !pointer.startsWith('/')) {
      throw new InputError(`parent '${pointer}' is not a file path (protocol and json: backing files are not supported)`, { file: child });
    }
    return { pointer, path: path.resolve(path.dirname(child), pointer) };
  }
}

/** Version token: the VMDK CID where there is one, plus inode, size, mtime and ctime (ns) of every file. */
export async function versionOf(files: string[], cid?: string): Promise<{ versionToken: string; logicalBytes: number }> {
  const hash = createHash('sha256');
  let logicalBytes = 0;
  for (const file of files) {
    const stat = await fs.stat(file, { bigint: true }).catch((err) => { throw fileError(file, err); });
    hash.update(`${file}\0${stat.ino}\0${stat.size}\0${stat.mtimeNs}\0${stat.ctimeNs}\n`);
    logicalBytes += Number(stat.size);
  }
  const stamp = hash.digest('hex').slice(0, 20);
  return { versionToken: cid ? `cid:${cid}/${stamp}` : stamp, logicalBytes };
}

function knownFormat(format: string | undefined): DiskFormat | undefined {
  return format === 'raw' || format === 'qcow2' || format === 'vmdk' ? format : undefined;
}

export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Reads one disk (and its parent chain) as it is now; undefined when its file no longer exists. */
export async function inspectDisk(root: string, diskPath: string, format?: DiskFormat): Promise<{ disk: VirtualDisk; chain: VirtualDisk[] } | undefined> {
  if (!(await fs.access(diskPath).then(() => true, () => false))) return undefined;
  const resolver = new DiskResolver(root);
  const paths = await resolver.resolveChain(diskPath, format, diskPath);
  const chain = paths.map((p) => resolver.disks.get(p)!);
  return { disk: chain[0], chain };
}
