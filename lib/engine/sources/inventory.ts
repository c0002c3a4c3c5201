import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isInside } from '../containment';
import { InputError, fileError } from '../errors';
import { notRegularFile, readConfigFile } from './files';
import { libvirtNamedFiles, parseLibvirtDomain } from './libvirt';
import { type DomainState, listDomains, poolFolders, snapshotOverlaysOf, withoutOverlays } from './libvirt-host';
import type { DiskSlot, ScanProblem, SourceSpec, VmConfig } from './types';
import { type VmDiskUse, usedByVms, vmDiskUses } from './usage';
import { DiskResolver, type VirtualDisk } from './virtual-disk';
import type { ScanMemo } from './scan-memo';
import { parseVmx, vmxNamedFiles } from './vmware';

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
  /** A domain of a live libvirt connection: its state when scanned (a live one is backed up frozen, see libvirt-host). */
  domain?: { uri: string; state: DomainState; persistent: boolean };
};

export type SourceInventory = {
  source: SourceSpec;
  /** The folder relative names are taken from (backups record disk and config paths relative to it): the config
   *  folder, or the deepest folder holding it and every storage folder. */
  root: string;
  /** The config folder (canonical), which the scan walks. */
  configRoot: string;
  /** Every folder the source's files may be in, canonical: the config folder, then the storage folders. */
  areas: string[];
  vms: VmInventory[];
  disks: Map<string, VirtualDisk>;
  /** disk path → names of the VMs (without errors) that use it, directly or through a parent chain. */
  usedBy: Map<string, string[]>;
  warnings: string[];
  problems: ScanProblem[];
};

const CONFIG_EXTENSION = { libvirt: '.xml', vmware: '.vmx' } as const;

/** How a scan runs: `memo` holds what the last scan of the source parsed (scan-memo.ts), and learns this one's. */
export type ScanOptions = { signal?: AbortSignal; memo?: ScanMemo };

/** Reads every VM of a source and resolves its disks and their parent chains. Reads headers only. */
export async function scanSource(source: SourceSpec, options: ScanOptions = {}): Promise<SourceInventory> {
  if (source.uri) return scanLibvirtHost(source, source.uri, options);
  const layout = await sourceLayout(source);
  const warnings: string[] = [];
  const problems: ScanProblem[] = [];
  const configs = await findConfigs(layout.configRoot, CONFIG_EXTENSION[source.type], warnings, problems);
  return scanConfigFiles(source, layout, configs, warnings, problems, options);
}

/**
 * A live libvirt connection: every domain it defines or runs, read through libvirt (the persistent definition is
 * what a backup keeps; the live XML says which files a running domain uses now). Disks may live in the config
 * folder, the storage pools' folders and the source's storage folders. A disk a killed backup left a running
 * domain on (its snapshot overlay, `<disk>.vmdedup-<tag>.qcow2`) is taken for the disk it overlays: the next backup
 * commits it back before anything else.
 */
async function scanLibvirtHost(source: SourceSpec, uri: string, options: ScanOptions): Promise<SourceInventory> {
  const warnings: string[] = [];
  const pools: string[] = [];
  for (const folder of await poolFolders(uri)) {
    const real = await fs.realpath(folder).catch(() => undefined);
    if (real) pools.push(real);
    else warnings.push(`${folder}: the folder of a storage pool does not exist; disks there are not read`);
  }
  const layout = await sourceLayout({ ...source, storage: [...pools, ...(source.storage ?? [])] });
  const configs: ConfigFile[] = [];
  for (const domain of await listDomains(uri)) {
    const configPath = path.join(layout.configRoot, `${domain.name}.xml`);
    if (domain.error) {
      configs.push({ path: configPath, error: new InputError(domain.error) });
      continue;
    }
    const overlays = snapshotOverlaysOf(domain.live);
    configs.push({
      path: configPath, bytes: withoutOverlays(domain.definition, overlays), liveBytes: withoutOverlays(domain.live, overlays),
      domain: { uri, state: domain.state, persistent: domain.persistent },
    });
  }
  return scanConfigFiles(source, layout, configs, warnings, [], options);
}

/** Where a source's files are: its config folder, every folder its disks may be in, and the folder that relative
 *  names are taken from (the deepest one holding all of them; the config folder when there is no storage folder
 *  outside it). Every folder must exist; each is taken canonical. */
export type SourceLayout = { configRoot: string; areas: string[]; base: string };

export async function sourceLayout(source: SourceSpec): Promise<SourceLayout> {
  const configRoot = await sourceRoot(source.path);
  const areas = [configRoot];
  for (const dir of source.storage ?? []) {
    const real = await sourceRoot(dir, 'storage folder');
    // A folder inside another adds nothing (and must not move the base).
    if (areas.some((area) => isInside(area, real))) continue;
    for (let i = areas.length - 1; i >= 1; i--) if (isInside(real, areas[i])) areas.splice(i, 1);
    areas.push(real);
  }
  return { configRoot, areas, base: commonFolder(areas) };
}

/** The deepest folder that holds every one of these absolute canonical folders. */
function commonFolder(dirs: string[]): string {
  let common = dirs[0];
  for (const dir of dirs.slice(1)) while (!isInside(common, dir)) common = path.dirname(common);
  return common;
}

/**
 * Reads only the given configs of a source (absolute canonical paths, where the catalog last saw the VMs) and their
 * disks: the backup of a few VMs of a large source, without reading the rest of it. The inventory holds those VMs
 * and disks only (`usedBy` counts them alone: the caller adds what it knows of the others). Undefined when any of
 * them is not a plain config file inside the source root any more (moved, replaced by a symlink, gone): the caller
 * then scans the whole source.
 */
export async function scanSomeConfigs(source: SourceSpec, configPaths: string[], options: ScanOptions = {}): Promise<SourceInventory | undefined> {
  // A libvirt connection's domains are not files (a running one's disks are in its live XML): asked of libvirt whole.
  if (source.uri) return undefined;
  const layout = await sourceLayout(source);
  const root = layout.configRoot;
  const extension = CONFIG_EXTENSION[source.type];
  const configs: ConfigFile[] = [];
  for (const configPath of [...new Set(configPaths)].sort()) {
    if (!path.isAbsolute(configPath) || !isInside(root, configPath) || !configPath.toLowerCase().endsWith(extension)) return undefined;
    // Hidden folders are not part of a source (findConfigs skips them).
    if (path.relative(root, configPath).split(path.sep).some((part) => part.startsWith('.'))) return undefined;
    const stat = await fs.lstat(configPath).catch(() => undefined);
    if (!stat?.isFile() || (await fs.realpath(configPath).catch(() => undefined)) !== configPath) return undefined;
    configs.push({ path: configPath });
  }
  return scanConfigFiles(source, layout, configs, [], [], options);
}

/** Configs read and parsed at once, their disks' headers read ahead: a scan of thousands of small VMs waits on many
 *  small reads, which overlap; bounded, so memory holds what is in flight. */
const READ_AHEAD = 32;
const YIELD_EVERY = 64;

async function scanConfigFiles(source: SourceSpec, layout: SourceLayout, configs: ConfigFile[], warnings: string[], problems: ScanProblem[], options: ScanOptions): Promise<SourceInventory> {
  const { signal, memo } = options;
  const resolver = new DiskResolver(layout, memo);
  const paths = new Map<string, string>();
  const vms: VmInventory[] = [];
  // Reading runs up to READ_AHEAD configs ahead; deciding (resolveChain, refusals) goes one VM after another, in
  // order, so the inventory is the same as a sequential scan's.
  const reads: Promise<ConfigRead>[] = [];
  const readAhead = (index: number) => {
    if (index < configs.length && !reads[index]) reads[index] = readConfig(source, configs[index], resolver, memo, paths);
  };
  for (let index = 0; index < Math.min(READ_AHEAD, configs.length); index++) readAhead(index);
  for (const [index, config] of configs.entries()) {
    // Configs are read with synchronous calls (files.ts): let timers, signals and other work in now and then.
    if (index % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((resolve) => setImmediate(resolve));
    signal?.throwIfAborted();
    readAhead(index + READ_AHEAD);
    const vm = await scanVm(source, config, await reads[index], resolver);
    delete reads[index];
    if (vm) vms.push(vm);
  }
  refuseAmbiguousVms(vms);
  problems.push(...resolver.assignIdentifiers());
  const usedBy = usedByVms(vms);
  return { source, root: layout.base, configRoot: layout.configRoot, areas: layout.areas, vms, disks: resolver.disks, usedBy, warnings, problems };
}

export async function sourceRoot(dir: string, what = 'source folder'): Promise<string> {
  let real: string;
  try {
    real = await fs.realpath(dir);
  } catch (err) {
    throw new InputError(`${what} does not exist or cannot be read (${fileError(dir, err).message.split(': ').pop()})`, { file: dir });
  }
  const stat = await fs.stat(real);
  if (!stat.isDirectory()) throw new InputError(`${what === 'source folder' ? 'source path' : what} is not a folder`, { file: dir });
  return real;
}

/** A config file to read: its canonical path, the symlink that named it, or why it cannot be read at all. */
type ConfigFile = {
  path: string; link?: string; error?: InputError;
  /** A domain of a live connection: its definition (what is backed up), and its live XML (whose disks are read). */
  bytes?: Buffer; liveBytes?: Buffer; domain?: VmInventory['domain'];
};

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

/** A config as read and parsed (or why not), its disks' reads started. */
type ConfigRead = { bytes?: Buffer; config?: VmConfig; error?: unknown };

async function readConfig(source: SourceSpec, file: ConfigFile, resolver: DiskResolver, memo: ScanMemo | undefined, paths: Map<string, string>): Promise<ConfigRead> {
  if (file.error) return { error: file.error };
  let bytes: Buffer | undefined;
  try {
    bytes = file.bytes ?? (await readConfigFile(file.path));
    // A running domain's disks are those it runs on now (its live XML); its definition is what the backup keeps.
    const parsed = file.liveBytes ?? bytes;
    const known = memo?.config(file.path, parsed);
    // Bytes parsed last time: their parse (null: not a VM), without parsing them again.
    const config = known === undefined ? parseConfig(source, file.path, parsed, memo) : known === null ? undefined : { ...known, configPath: file.path, configBytes: parsed };
    if (config) config.configBytes = bytes;
    for (const slot of config?.slots ?? []) {
      // One string per path the scan's configs name (a pool's 10,000 configs name one shared disk; a slot's target
      // and path are mostly the same text), not one per config.
      if (slot.target !== undefined) slot.target = interned(paths, slot.target);
      if (slot.path !== undefined) slot.path = interned(paths, slot.path);
      if (slot.backedUp && slot.path) void resolver.prefetch(slot.path, slot.format);
    }
    return { bytes, config };
  } catch (err) {
    return { bytes, error: err };
  }
}

function interned(strings: Map<string, string>, text: string): string {
  const known = strings.get(text);
  if (known !== undefined) return known;
  strings.set(text, text);
  return text;
}

/** Parses a config (throwing an InputError for a broken one), and remembers the parse. */
function parseConfig(source: SourceSpec, configPath: string, bytes: Buffer, memo: ScanMemo | undefined): VmConfig | undefined {
  const parsed = source.type === 'libvirt' ? parseLibvirtDomain(configPath, bytes) : parseVmx(configPath, bytes);
  // A copy: the parser's strings are slices of the config's text, which they would keep in memory for the whole run
  // (a pool's 10,000 configs held as text beside their bytes).
  const config = parsed && { ...structuredClone({ name: parsed.name, uuid: parsed.uuid, slots: parsed.slots }), configPath, configBytes: bytes };
  memo?.rememberConfig(configPath, bytes, config ? { name: config.name, uuid: config.uuid, slots: config.slots } : null);
  return config;
}

/** Returns undefined for well-formed XML that is not a domain (network definitions…). */
async function scanVm(source: SourceSpec, file: ConfigFile, read: ConfigRead, resolver: DiskResolver): Promise<VmInventory | undefined> {
  const configPath = file.path;
  const fallbackName = path.basename(file.link ?? configPath).replace(/\.[^.]+$/, '');
  const { bytes } = read;
  let config: VmConfig | undefined;
  try {
    if (read.error) throw read.error;
    config = read.config;
    if (!config) return undefined;
    const disks = await vmDiskUses(config.slots, configPath, resolver);
    const namedPaths = await canonicalPaths(config.slots.flatMap((slot) => (slot.path ? [slot.path] : [])), resolver);
    return { name: config.name, uuid: config.uuid, configPath, config, slots: config.slots, disks, namedPaths, ...(file.domain ? { domain: file.domain } : {}) };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    const named = config ? config.slots.flatMap((slot) => (slot.path ? [slot.path] : []))
      : bytes ? (source.type === 'libvirt' ? libvirtNamedFiles(bytes) : vmxNamedFiles(bytes)).map((named) => path.resolve(path.dirname(configPath), named))
      : [];
    return {
      ...(file.domain ? { domain: file.domain } : {}),
      name: config?.name ?? fallbackName, uuid: config?.uuid ?? '', configPath, config, slots: config?.slots ?? [], disks: [],
      namedPaths: await canonicalPaths(named, resolver),
      error: file.link ? `${err.message} (named by ${file.link})` : err.message,
    };
  }
}

async function canonicalPaths(paths: string[], resolver: DiskResolver): Promise<string[]> {
  const out: string[] = [];
  for (const named of paths) {
    const real = await resolver.realpath(named).catch(() => path.resolve(named));
    if (!out.includes(real)) out.push(real);
  }
  return out;
}

/** A VM's UUID as compared: "6F1C…" and "6f1c-…" are one UUID (libvirt takes both forms); anything that is not a
 *  UUID compares as written (trimmed, any case). Empty: no UUID. */
export function vmUuidKey(uuid: string): string {
  const hex = uuid.replace(/-/g, '').toLowerCase();
  return /^[0-9a-f]{32}$/.test(hex) ? hex : uuid.trim().toLowerCase();
}

/**
 * A VM is known by its name within its source (the catalog's key) and by its UUID. Two configs that define the
 * same name, or the same UUID (a copied VM folder), are one ambiguous identity: every VM that shares it is
 * refused, naming the other configs, rather than one backed up under the other's history.
 */
function refuseAmbiguousVms(vms: VmInventory[]): void {
  const identified = vms.filter((vm) => vm.config); // a config that did not parse has a name taken from its file only
  const group = (key: (vm: VmInventory) => string) => {
    const groups = new Map<string, VmInventory[]>();
    for (const vm of identified) {
      const k = key(vm);
      if (k) groups.set(k, [...(groups.get(k) ?? []), vm]);
    }
    return groups;
  };
  const byName = group((vm) => vm.name);
  const byUuid = group((vm) => vmUuidKey(vm.uuid));
  for (const vm of identified) {
    const others = (groups: Map<string, VmInventory[]>, key: string) => (groups.get(key) ?? []).filter((other) => other !== vm).map((other) => other.configPath);
    const sameName = others(byName, vm.name);
    const sameUuid = vmUuidKey(vm.uuid) ? others(byUuid, vmUuidKey(vm.uuid)) : [];
    if (sameName.length === 0 && sameUuid.length === 0) continue;
    const reasons = [
      ...(sameName.length ? [`VM name '${vm.name}' is also defined by ${sameName.join(', ')}`] : []),
      ...(sameUuid.length ? [`UUID ${vm.uuid} is also used by ${sameUuid.join(', ')}`] : []),
    ];
    const fix = sameUuid.length ? 'give the copy a new UUID' : 'rename one of them';
    vm.error = new InputError(`${reasons.join('; ')}: an ambiguous identity, not backed up (${fix})`, { file: vm.configPath }).message;
  }
}


