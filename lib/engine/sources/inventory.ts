import { createHash } from 'node:crypto';
import type { BigIntStats, Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isInside } from '../containment';
import { InputError, fileError } from '../errors';
import { detectDiskFormat } from '../formats/detect';
import { readQcow2Header } from '../formats/qcow2';
import { readVmdkDescriptor } from '../formats/vmdk';
import { notRegularFile, openDiskFile, readConfigFile } from './files';
import { libvirtNamedFiles, parseLibvirtDomain } from './libvirt';
import type { DiskFormat, DiskSlot, SourceSpec, VmConfig } from './types';
import { parseVmx, vmxNamedFiles } from './vmware';

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
  /** Every file the config names as a disk (CD-ROM images too), absolute and canonical where the file exists;
   *  parents not included. Present for a VM with an error as well (read leniently from a config that does not
   *  parse), so that it still counts as a user of those files. */
  namedPaths: string[];
  /** Set when the VM cannot be backed up: one line saying what and where. */
  error?: string;
};

/** A problem of the source, not of one VM (an ambiguous disk GUID, a folder that cannot be read): the disks
 *  concerned are still backed up, but the run reports the line and exits 2. */
export type ScanProblem = { message: string; disks: string[] };

export type SourceInventory = {
  source: SourceSpec;
  root: string;
  vms: VmInventory[];
  disks: Map<string, VirtualDisk>;
  /** disk path → names of the VMs (without errors) that use it, directly or through a parent chain. */
  usedBy: Map<string, string[]>;
  warnings: string[];
  problems: ScanProblem[];
};

const MAX_CHAIN_DEPTH = 256;
const CONFIG_EXTENSION = { libvirt: '.xml', vmware: '.vmx' } as const;

/** Reads every VM of a source and resolves its disks and their parent chains. Reads headers only. */
export async function scanSource(source: SourceSpec, options: { signal?: AbortSignal } = {}): Promise<SourceInventory> {
  const root = await sourceRoot(source.path);
  const warnings: string[] = [];
  const problems: ScanProblem[] = [];
  const configs = await findConfigs(root, CONFIG_EXTENSION[source.type], warnings, problems);
  const resolver = new DiskResolver(root);
  const vms: VmInventory[] = [];
  for (const config of configs) {
    options.signal?.throwIfAborted();
    const vm = await scanVm(source, config, resolver);
    if (vm) vms.push(vm);
  }
  refuseAmbiguousVms(vms);
  problems.push(...resolver.assignIdentifiers());
  const usedBy = new Map<string, string[]>();
  for (const vm of vms) {
    if (vm.error) continue;
    for (const use of vm.disks) {
      const users = usedBy.get(use.diskPath) ?? [];
      if (!users.includes(vm.name)) users.push(vm.name);
      usedBy.set(use.diskPath, users);
    }
  }
  return { source, root, vms, disks: resolver.disks, usedBy, warnings, problems };
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

/** A config file to read: its canonical path, the symlink that named it, or why it cannot be read at all. */
type ConfigFile = { path: string; link?: string; error?: InputError };

/**
 * The config files of a source (found recursively; hidden files and folders skipped, symlinked folders not followed). A
 * symlinked config counts once, at its canonical path: a link to a config already found (libvirt's autostart
 * links) is an alias, not a second VM. A FIFO, socket or device named like a config is reported, never opened.
 */
async function findConfigs(root: string, extension: string, warnings: string[], problems: ScanProblem[]): Promise<ConfigFile[]> {
  const regular: string[] = [];
  const links: string[] = [];
  const special: ConfigFile[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (dir === root) throw fileError(root, err);
      problems.push({ message: `${fileError(dir, err).message}: this folder's VM configs are not read`, disks: [] });
      return;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = path.join(dir, entry.name);
      // Hidden folders too: snapshot folders (.snapshot, .zfs) hold a copy of every config, not more VMs.
      if (entry.name.startsWith('.')) continue;
      if (entry.isDirectory()) await walk(full);
      else if (!entry.name.toLowerCase().endsWith(extension)) continue;
      else if (entry.isFile()) regular.push(full);
      else if (entry.isSymbolicLink()) links.push(full);
      else special.push({ path: full, error: notRegularFile(full, entry) });
    }
  };
  await walk(root);
  const seen = new Set(regular);
  const configs: ConfigFile[] = [...regular.map((file) => ({ path: file })), ...special];
  for (const link of links) {
    let target: string;
    try {
      target = await fs.realpath(link);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') warnings.push(`${link}: symlink to a config that does not exist; skipped`);
      else configs.push({ path: link, error: fileError(link, err) });
      continue;
    }
    if (!isInside(root, target)) {
      configs.push({ path: link, error: new InputError(`symlink leads outside the source root ${root}`, { file: link }) });
      continue;
    }
    if (seen.has(target)) continue;
    if ((await fs.stat(target).catch(() => undefined))?.isDirectory()) continue;
    seen.add(target);
    configs.push({ path: target, link });
  }
  return configs.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Returns undefined for well-formed XML that is not a domain (network definitions…). */
async function scanVm(source: SourceSpec, file: ConfigFile, resolver: DiskResolver): Promise<VmInventory | undefined> {
  const configPath = file.path;
  const fallbackName = path.basename(file.link ?? configPath).replace(/\.[^.]+$/, '');
  let bytes: Buffer | undefined;
  let config: VmConfig | undefined;
  try {
    if (file.error) throw file.error;
    bytes = await readConfigFile(configPath);
    config = source.type === 'libvirt' ? parseLibvirtDomain(configPath, bytes) : parseVmx(configPath, bytes);
    if (!config) return undefined;
    const disks: VmDiskUse[] = [];
    // canonical path → the slot it is attached in, or the slot whose parent chain holds it
    const attachedIn = new Map<string, string>();
    const parentIn = new Map<string, string>();
    for (const slot of config.slots) {
      if (!slot.backedUp || !slot.path) continue;
      const chain = await resolver.resolveChain(slot.path, slot.format, configPath);
      const [attached, ...parents] = chain;
      // One file in two places of one VM: two writers of one image (QEMU refuses it too), and a backup image
      // that would hold the same disk twice.
      const twice = attachedIn.get(attached);
      if (twice) throw new InputError(`disk is attached in two slots, ${twice} and ${slot.slot}`, { file: attached });
      const asParent = parentIn.get(attached);
      if (asParent) throw new InputError(`disk is attached in slot ${slot.slot} and is also the parent of the disk in slot ${asParent}`, { file: attached });
      for (const parent of parents) {
        const asAttached = attachedIn.get(parent);
        if (asAttached) throw new InputError(`disk is attached in slot ${asAttached} and is also the parent of the disk in slot ${slot.slot}`, { file: parent });
        if (!parentIn.has(parent)) parentIn.set(parent, slot.slot);
      }
      attachedIn.set(attached, slot.slot);
      disks.push({ diskPath: attached, via: 'attached', slot: slot.slot, target: slot.target });
      for (const parent of parents) {
        if (!disks.some((d) => d.diskPath === parent)) disks.push({ diskPath: parent, via: 'parent' });
      }
      resolver.noteSlotIdentity(attached, slot);
    }
    const namedPaths = await canonicalPaths(config.slots.flatMap((slot) => (slot.path ? [slot.path] : [])));
    return { name: config.name, uuid: config.uuid, configPath, config, slots: config.slots, disks, namedPaths };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    const named = config ? config.slots.flatMap((slot) => (slot.path ? [slot.path] : []))
      : bytes ? (source.type === 'libvirt' ? libvirtNamedFiles(bytes) : vmxNamedFiles(bytes)).map((named) => path.resolve(path.dirname(configPath), named))
      : [];
    return {
      name: config?.name ?? fallbackName, uuid: config?.uuid ?? '', configPath, config, slots: config?.slots ?? [], disks: [],
      namedPaths: await canonicalPaths(named),
      error: file.link ? `${err.message} (named by ${file.link})` : err.message,
    };
  }
}

async function canonicalPaths(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const named of paths) {
    const real = await fs.realpath(named).catch(() => path.resolve(named));
    if (!out.includes(real)) out.push(real);
  }
  return out;
}

/**
 * A VM is known by its name within its source (the catalog's key) and by its UUID. Two configs that define the
 * same name, or the same UUID (a copied VM folder), are one ambiguous identity: every VM that shares it is
 * refused, naming the other configs, rather than one backed up under the other's history.
 */
function refuseAmbiguousVms(vms: VmInventory[]): void {
  const identified = vms.filter((vm) => vm.config); // a config that did not parse has a name taken from its file only
  // "6F1C…" and "6f1c-…" are one UUID (libvirt takes both forms); anything that is not a UUID compares as written.
  const uuidKey = (uuid: string) => {
    const hex = uuid.replace(/-/g, '').toLowerCase();
    return /^[0-9a-f]{32}$/.test(hex) ? hex : uuid.trim().toLowerCase();
  };
  const group = (key: (vm: VmInventory) => string) => {
    const groups = new Map<string, VmInventory[]>();
    for (const vm of identified) {
      const k = key(vm);
      if (k) groups.set(k, [...(groups.get(k) ?? []), vm]);
    }
    return groups;
  };
  const byName = group((vm) => vm.name);
  const byUuid = group((vm) => uuidKey(vm.uuid));
  for (const vm of identified) {
    const others = (groups: Map<string, VmInventory[]>, key: string) => (groups.get(key) ?? []).filter((other) => other !== vm).map((other) => other.configPath);
    const sameName = others(byName, vm.name);
    const sameUuid = uuidKey(vm.uuid) ? others(byUuid, uuidKey(vm.uuid)) : [];
    if (sameName.length === 0 && sameUuid.length === 0) continue;
    const reasons = [
      ...(sameName.length ? [`VM name '${vm.name}' is also defined by ${sameName.join(', ')}`] : []),
      ...(sameUuid.length ? [`UUID ${vm.uuid} is also used by ${sameUuid.join(', ')}`] : []),
    ];
    const fix = sameUuid.length ? 'give the copy a new UUID' : 'rename one of them';
    vm.error = new InputError(`${reasons.join('; ')}: an ambiguous identity, not backed up (${fix})`, { file: vm.configPath }).message;
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
      const known = this.disks.get(canonical);
      // One file read as two formats (raw by one VM, qcow2 by another) would give one VM the other's parent chain.
      if (known && next.format && known.format !== next.format) {
        throw new InputError(`named as ${next.format} here (by ${path.relative(this.root, next.referrer) || next.referrer}) but as ${known.format} elsewhere in the source`, { file: canonical });
      }
      const disk: VirtualDisk = known ?? (await this.readDisk(canonical, next.format));
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
    const fh = await openDiskFile(canonical);
    try {
      const stat = await fh.stat();
      const detected = await detectDiskFormat(fh, canonical);
      // A config that says raw is honoured as raw, whatever the bytes (as the hypervisor reads it: a guest may write
      // anything, a qcow2 header too, into its raw disk); any other claim must match the bytes.
      const format = hint === 'raw' ? 'raw' : hint ?? detected;
      if (format !== 'raw' && format !== detected) throw new InputError(`config says ${format} but the file is ${detected === 'raw' ? 'not a valid ' + format + ' image' : detected}`, { file: canonical });
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

export type DiskVersion = { versionToken: string; logicalBytes: number; racilyClean: boolean };

/**
 * How much older than the moment of its stat a file's newest timestamp (mtime or ctime) must be for its version
 * to be trusted later ("racily clean" otherwise, as git says). A write in the same timestamp tick as the stat
 * leaves size and times unchanged; one tick later it cannot. Timestamps with a sub-second part come from a
 * filesystem with a tick of at most 10 ms (the kernel's coarse clock): 100 ms covers it and a file server's clock
 * running slightly behind. Whole-second timestamps (ext3, ext4 with 128-byte inodes, FAT's 2 s, many network
 * exports) get 3 s: two seconds of granularity and one of skew.
 */
export const RACY_MARGIN_NS = { fineTimestamps: 100_000_000n, wholeSecondTimestamps: 3_000_000_000n } as const;

/** True when a file's timestamps are too recent, at the moment `statAtNs` (ns since the epoch), to trust later. */
export function tooRecentToTrust(stat: Pick<BigIntStats, 'mtimeNs' | 'ctimeNs'>, statAtNs: bigint): boolean {
  const newest = stat.mtimeNs > stat.ctimeNs ? stat.mtimeNs : stat.ctimeNs;
  const wholeSeconds = stat.mtimeNs % 1_000_000_000n === 0n && stat.ctimeNs % 1_000_000_000n === 0n;
  return newest + (wholeSeconds ? RACY_MARGIN_NS.wholeSecondTimestamps : RACY_MARGIN_NS.fineTimestamps) > statAtNs;
}

/**
 * Version token: the VMDK CID where there is one, plus inode, size, mtime and ctime (ns) of every file, each
 * taken by fstat of the opened file (on NFS the open revalidates cached attributes). `racilyClean` when any file
 * changed too shortly before its stat for the token to be trusted (see RACY_MARGIN_NS).
 */
export async function versionOf(files: string[], cid?: string): Promise<DiskVersion> {
  const hash = createHash('sha256');
  let logicalBytes = 0;
  let racilyClean = false;
  for (const file of files) {
    const handle = await openDiskFile(file);
    let stat: BigIntStats;
    // Taken before the stat: the moment can only be earlier than the stat, never flatter the file's age.
    const statAtNs = BigInt(Date.now()) * 1_000_000n;
    try {
      stat = await handle.stat({ bigint: true });
    } catch (err) {
      throw fileError(file, err);
    } finally {
      await handle.close();
    }
    hash.update(`${file}\0${stat.ino}\0${stat.size}\0${stat.mtimeNs}\0${stat.ctimeNs}\n`);
    logicalBytes += Number(stat.size);
    if (tooRecentToTrust(stat, statAtNs)) racilyClean = true;
  }
  const stamp = hash.digest('hex').slice(0, 20);
  return { versionToken: cid ? `cid:${cid}/${stamp}` : stamp, logicalBytes, racilyClean };
}

function knownFormat(format: string | undefined): DiskFormat | undefined {
  return format === 'raw' || format === 'qcow2' || format === 'vmdk' ? format : undefined;
}


/** Reads one disk (and its parent chain) as it is now; undefined when its file no longer exists. */
export async function inspectDisk(root: string, diskPath: string, format?: DiskFormat): Promise<{ disk: VirtualDisk; chain: VirtualDisk[] } | undefined> {
  if (!(await fs.access(diskPath).then(() => true, () => false))) return undefined;
  const resolver = new DiskResolver(root);
  const paths = await resolver.resolveChain(diskPath, format, diskPath);
  const chain = paths.map((p) => resolver.disks.get(p)!);
  return { disk: chain[0], chain };
}
