/**
 * The model behind test/model.test.ts: a seeded generator of small fleets with real images (qemu-img,
 * qemu-io), the fleet's structure as the test believes it to be (sources, VM configs, disks, parent links),
 * random edits that keep that belief exact, and snapshots of what every VM's disks held at each backup
 * (sha256 of every file, and the guest view of every disk as a raw file for `qemu-img compare`).
 *
 * The model never asks vmdedup anything: what it expects is derived from what it built and did.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeData } from '../../lib/demo/fleet';

const exec = promisify(execFile);
export const MiB = 1024 * 1024;

/** mulberry32: small, seedable, the same sequence on every machine. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = (Math.imul(seed, 2654435761) ^ 0x9e3779b9) >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing');
    return items[Math.floor(this.next() * items.length)];
  }
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

export type Format = 'raw' | 'qcow2' | 'vmdk';
export type SourceType = 'libvirt' | 'vmware';
export type Source = { name: string; type: SourceType; root: string };

/** One disk image file (plus extents) and its parent link, as the model made it. */
export type Disk = {
  path: string;
  format: Format;
  /** Canonical path of the parent, and the pointer as written in the image. */
  parent?: string;
  pointer?: string;
  /** Further files of the disk (a monolithicFlat VMDK's -flat extent). */
  extents: string[];
  virtualSize: number;
  /** What it is, for the log: base, mid, clone, fresh-clone, data, blank, swap, config, quorum… */
  role: string;
};

/** A config's disk entry; `format` is the driver type it names (kept when the disk itself is gone). */
export type Slot = { slot: string; disk: string; format: Format; readonly?: boolean };
export type VmConfig = { name: string; uuid: string; type: SourceType; configPath: string; slots: Slot[] };

export type Layout = 'nested-libvirt' | 'libvirt-over-vmware';

export async function tool(command: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await exec(command, args, { maxBuffer: 64 * MiB });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')}: ${(e.stderr || e.message).trim()}`);
  }
}

export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

const exists = (file: string) => fs.access(file).then(() => true, () => false);

export class Fleet {
  readonly sources: Source[] = [];
  readonly disks = new Map<string, Disk>();
  readonly vms: VmConfig[] = [];
  readonly log: string[] = [];
  layout: Layout = 'nested-libvirt';
  /** Folders moved since the fleet was built (a datastore that moved), oldest first. */
  readonly moves: { from: string; to: string }[] = [];
  readonly editsDone = new Map<string, number>();
  private counter = 0;

  constructor(readonly dir: string, readonly rng: Rng, readonly seed: number) {}

  note(line: string): void {
    this.log.push(line);
  }

  /** The sources that see a VM: every source of its type whose folder holds its config. */
  sourcesOf(vm: VmConfig): Source[] {
    return this.sources.filter((s) => s.type === vm.type && isInside(s.root, vm.configPath));
  }

  /** Every (source, VM) pair: a VM seen by two sources is backed up, and restored, as two VMs. */
  pairs(): { source: Source; vm: VmConfig; key: string }[] {
    return this.vms.flatMap((vm) => this.sourcesOf(vm).map((source) => ({ source, vm, key: pairKey(source.name, vm.name) })));
  }

  /** A disk and its parents; `missing` names the first file of the chain that no longer exists. */
  chain(diskPath: string): { paths: string[]; missing?: string } {
    const paths: string[] = [];
    let at: string | undefined = diskPath;
    while (at) {
      const disk = this.disks.get(at);
      if (!disk) return { paths, missing: at };
      paths.push(at);
      at = disk.parent;
    }
    return { paths };
  }

  /** Every disk a VM uses (attached, then parents), and whether any of them is gone. */
  closure(vm: VmConfig): { paths: string[]; missing: string[]; named: string[] } {
    const paths: string[] = [];
    const missing: string[] = [];
    const named: string[] = [];
    for (const slot of vm.slots) {
      const { paths: chain, missing: gone } = this.chain(slot.disk);
      for (const p of chain) if (!paths.includes(p)) paths.push(p);
      for (const p of [...chain, ...(gone ? [gone] : [])]) if (!named.includes(p)) named.push(p);
      if (gone) missing.push(gone);
    }
    return { paths, missing, named };
  }

  /** Why a VM cannot be backed up (a file it needs is gone; one disk both attached and a parent in it), if it cannot. */
  broken(vm: VmConfig): string | undefined {
    const { missing } = this.closure(vm);
    if (missing.length) return `uses missing ${missing.map((p) => this.show(p)).join(', ')}`;
    const parents = new Set(vm.slots.flatMap((slot) => this.chain(slot.disk).paths.slice(1)));
    const both = vm.slots.find((slot) => parents.has(slot.disk));
    return both ? `attaches ${this.show(both.disk)} in ${both.slot} and has it as a parent of another slot's disk` : undefined;
  }

  /** VM configs that name a disk now, directly or through a parent chain (broken configs included). */
  usersNow(diskPath: string): VmConfig[] {
    return this.vms.filter((vm) => this.closure(vm).named.includes(diskPath));
  }

  /** (source, VM) pairs that use a disk now. */
  pairUsersNow(diskPath: string): string[] {
    return this.usersNow(diskPath).flatMap((vm) => this.sourcesOf(vm).map((s) => pairKey(s.name, vm.name)));
  }

  filesOf(diskPath: string): string[] {
    const disk = this.disks.get(diskPath);
    return disk ? [disk.path, ...disk.extents] : [diskPath];
  }

  children(diskPath: string): Disk[] {
    return [...this.disks.values()].filter((d) => d.parent === diskPath);
  }

  descendants(diskPath: string): Set<string> {
    const out = new Set<string>();
    const walk = (p: string) => {
      for (const child of this.children(p)) if (!out.has(child.path)) { out.add(child.path); walk(child.path); }
    };
    walk(diskPath);
    return out;
  }

  /** Where a file recorded at some backup lies now, after the moves since. */
  now(file: string): string {
    let at = file;
    for (const { from, to } of this.moves) if (isInside(from, at)) at = path.join(to, path.relative(from, at));
    return at;
  }

  /** A path for the log: relative to the fleet folder. */
  show(file: string): string {
    return path.relative(this.dir, file) || '.';
  }

  /** The smallest source folder holding a file (where its own relative pointers live). */
  homeRoot(file: string): string {
    const roots = this.sources.map((s) => s.root).filter((root) => isInside(root, file));
    return roots.sort((a, b) => b.length - a.length)[0] ?? this.dir;
  }

  /** Whether a VM may point at a disk: the disk's whole chain lies inside every source that sees the VM. */
  reachable(vm: VmConfig, diskPath: string): boolean {
    const { paths, missing } = this.chain(diskPath);
    if (missing) return false;
    const roots = this.sourcesOf(vm).map((s) => s.root);
    return paths.every((p) => roots.every((root) => isInside(root, p)));
  }

  renderConfig(vm: VmConfig): string {
    const dir = path.dirname(vm.configPath);
    // Inside the config's own source tree a pointer is relative, as tools write it; across trees, absolute.
    const pointer = (disk: string) => (this.homeRoot(disk) === this.homeRoot(vm.configPath) ? path.relative(dir, disk) : disk);
    if (vm.type === 'libvirt') {
      const disks = vm.slots.map((slot) => [
        `    <disk type='file' device='disk'>`,
        `      <driver name='qemu' type='${slot.format}'/>`,
        `      <source file='${pointer(slot.disk)}'/>`,
        `      <target dev='${slot.slot}' bus='virtio'/>`,
        ...(slot.readonly ? ['      <readonly/>', '      <shareable/>'] : []),
        '    </disk>',
      ].join('\n'));
      return [
        `<domain type='kvm'>`, `  <name>${vm.name}</name>`, `  <uuid>${vm.uuid}</uuid>`, `  <memory unit='KiB'>524288</memory>`,
        '  <devices>', ...disks, '  </devices>', '</domain>', '',
      ].join('\n');
    }
    const lines = [
      '.encoding = "UTF-8"', 'config.version = "8"', 'virtualHW.version = "19"', `displayName = "${vm.name}"`,
      `uuid.bios = "${vm.uuid}"`, 'scsi0.present = "TRUE"', 'scsi0.virtualDev = "pvscsi"',
    ];
    for (const slot of vm.slots) {
      lines.push(`${slot.slot}.present = "TRUE"`, `${slot.slot}.fileName = "${pointer(slot.disk)}"`);
      if (slot.readonly) lines.push(`${slot.slot}.mode = "independent-persistent"`, `${slot.slot}.sharing = "multi-writer"`);
    }
    return `${lines.join('\n')}\n`;
  }

  async writeConfig(vm: VmConfig): Promise<void> {
    await fs.mkdir(path.dirname(vm.configPath), { recursive: true });
    await fs.writeFile(vm.configPath, this.renderConfig(vm));
  }

  nextSlot(type: SourceType, slots: Slot[]): string {
    for (let i = 0; ; i++) {
      const slot = type === 'libvirt' ? `vd${String.fromCharCode(97 + i)}` : `scsi0:${i}`;
      if (!slots.some((s) => s.slot === slot)) return slot;
    }
  }

  /** Attaches a disk in the next free slot of a slot list being built. */
  attach(type: SourceType, slots: Slot[], disk: Disk, readonly?: boolean): void {
    slots.push({ slot: this.nextSlot(type, slots), disk: disk.path, format: disk.format, ...(readonly ? { readonly } : {}) });
  }

  unique(): number {
    return ++this.counter;
  }

  describe(): string[] {
    const lines = [`layout ${this.layout}; sources: ${this.sources.map((s) => `${s.name} (${s.type}, ${this.show(s.root)})`).join(', ')}`];
    for (const vm of this.vms) {
      const seen = this.sourcesOf(vm).map((s) => s.name).join('+');
      lines.push(`  ${vm.name} [${seen}] ${this.show(vm.configPath)}: ${vm.slots.map((s) => `${s.slot}=${this.describeChain(s.disk)}`).join('  ')}`);
    }
    return lines;
  }

  describeChain(diskPath: string): string {
    const { paths, missing } = this.chain(diskPath);
    const parts = paths.map((p) => `${this.show(p)}(${this.disks.get(p)!.role},${this.disks.get(p)!.format})`);
    if (missing) parts.push(`${this.show(missing)}(MISSING)`);
    return parts.join('->');
  }

  // ---- making disks ----

  private scratch(): string {
    return path.join(this.dir, '..', 'scratch', `${this.unique()}.raw`);
  }

  private add(disk: Disk): Disk {
    this.disks.set(disk.path, disk);
    return disk;
  }

  async rawData(file: string, size: number, dataSeed: number, role: string): Promise<Disk> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeData(file, size, dataSeed);
    return this.add({ path: file, format: 'raw', extents: [], virtualSize: size, role });
  }

  async blank(file: string, format: 'raw' | 'qcow2', size: number): Promise<Disk> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await tool('qemu-img', 'create', '-q', '-f', format, file, String(size));
    return this.add({ path: file, format, extents: [], virtualSize: size, role: 'blank' });
  }

  /** A qcow2 or VMDK image with data, converted from raw (VMDK: monolithicSparse, or monolithicFlat = descriptor + extent). */
  async imageWithData(file: string, format: 'qcow2' | 'vmdk', size: number, dataSeed: number, role: string, subformat = 'monolithicSparse'): Promise<Disk> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const raw = this.scratch();
    await fs.mkdir(path.dirname(raw), { recursive: true });
    await writeData(raw, size, dataSeed);
    await tool('qemu-img', 'convert', '-f', 'raw', '-O', format, ...(format === 'vmdk' ? ['-o', `subformat=${subformat}`] : []), raw, file);
    await fs.rm(raw);
    const extents = format === 'vmdk' && subformat === 'monolithicFlat' ? [file.replace(/\.vmdk$/, '-flat.vmdk')] : [];
    return this.add({ path: file, format, extents, virtualSize: size, role });
  }

  /** A linked clone: `qemu-img create -b`, pointer relative to the child's folder unless `absolute`. */
  async clone(file: string, parentPath: string, role: string, options: { absolute?: boolean; writes?: number } = {}): Promise<Disk> {
    const parent = this.disks.get(parentPath)!;
    await fs.mkdir(path.dirname(file), { recursive: true });
    const pointer = options.absolute ? parentPath : path.relative(path.dirname(file), parentPath);
    await tool('qemu-img', 'create', '-q', '-f', parent.format, '-b', pointer, '-F', parent.format, file);
    const disk = this.add({ path: file, format: parent.format, parent: parentPath, pointer, extents: [], virtualSize: parent.virtualSize, role });
    for (let i = 0; i < (options.writes ?? 0); i++) await this.guestWrite(disk);
    return disk;
  }

  /** A guest write through qemu-io: a random run of one random byte value at a random 64 KiB-aligned offset. */
  async guestWrite(disk: Disk): Promise<string> {
    const unit = 64 * 1024;
    const length = unit * this.rng.int(1, 6);
    const offset = unit * this.rng.int(0, Math.max(0, Math.floor((disk.virtualSize - length) / unit)));
    const value = this.rng.int(1, 255);
    await tool('qemu-io', '-f', disk.format, '-c', `write -P ${value} ${offset} ${length}`, disk.path);
    return `${length / 1024} KiB of 0x${value.toString(16)} at ${offset}`;
  }

  async addVm(vm: VmConfig): Promise<VmConfig> {
    this.vms.push(vm);
    await this.writeConfig(vm);
    return vm;
  }
}

export function pairKey(source: string, vm: string): string {
  return `${source}/${vm}`;
}

/**
 * Builds one random fleet:
 * - kvm (libvirt): qcow2 bases with linked clones in chains of depth 1–3, two fresh clones of one parent
 *   (byte-identical files under different names), blank and swap disks identical across VMs, a shared
 *   config disk attached to several VMs, private raw disks, some VMs keeping disks in their own sub-folder;
 * - esx (VMware): a monolithicSparse base with linked-clone children (depth 1–2), a monolithicFlat
 *   multi-writer disk, private sparse disks;
 * - outer (libvirt), whose folder holds another source's: its VMs point by absolute path at that source's
 *   disks (nested-libvirt: kvm's bases and disks, and outer also sees kvm's own configs; libvirt-over-vmware:
 *   the VMware datastore's VMDKs, through libvirt's vmdk driver).
 */
export async function buildFleet(dir: string, seed: number): Promise<Fleet> {
  const rng = new Rng(seed);
  const fleet = new Fleet(dir, rng, seed);
  fleet.layout = rng.chance(0.5) ? 'nested-libvirt' : 'libvirt-over-vmware';
  const kvmRoot = path.join(dir, 'kvm');
  const esxRoot = fleet.layout === 'nested-libvirt' ? path.join(dir, 'esx') : path.join(dir, 'site', 'esx');
  const outerRoot = fleet.layout === 'nested-libvirt' ? dir : path.join(dir, 'site');
  fleet.sources.push({ name: 'kvm', type: 'libvirt', root: kvmRoot }, { name: 'esx', type: 'vmware', root: esxRoot }, { name: 'outer', type: 'libvirt', root: outerRoot });
  const uuid = (index: number) => `6f1c2a3e-${(seed % 0xffff).toString(16).padStart(4, '0')}-4000-8000-${String(index).padStart(12, '0')}`;
  let vmIndex = 0;

  // --- kvm ---
  const images = path.join(kvmRoot, 'images');
  const bases: Disk[] = [];
  for (let b = 1; b <= rng.int(1, 2); b++) {
    let tip = await fleet.imageWithData(path.join(images, `base-${b}.qcow2`), 'qcow2', rng.int(3, 4) * MiB, seed * 31 + b, 'base');
    bases.push(tip);
    // Chains of depth 1–3: clones of the base itself, or of a golden image (and its child) made from it.
    for (let depth = 2; depth <= 3 && rng.chance(0.5); depth++) {
      tip = await fleet.clone(path.join(images, `golden-${b}${depth === 3 ? 'b' : ''}.qcow2`), tip.path, 'mid', { writes: 2 });
      bases.push(tip);
    }
  }
  const siteConfig = await fleet.rawData(path.join(images, 'site-config.raw'), rng.int(1, 2) * MiB, seed * 7919, 'config');
  const kvmCount = rng.int(2, 3);
  const blankFormat = rng.pick(['raw', 'qcow2'] as const);
  const blankSize = rng.int(2, 3) * MiB;
  const swapSize = 2 * MiB + 4096 * rng.int(0, 3);
  const freshParent = rng.pick(bases);
  const configUsers = new Set(rng.shuffle([...Array(kvmCount).keys()]).slice(0, rng.int(2, kvmCount)));
  for (let i = 0; i < kvmCount; i++) {
    const name = `vm${i + 1}`;
    // The first two VMs' system disks are fresh clones of one parent, side by side: byte-identical files.
    const fresh = i < 2;
    const home = !fresh && rng.chance(0.4) ? path.join(images, name) : images;
    const slots: Slot[] = [];
    const parent = fresh ? freshParent : rng.pick(bases);
    const sys = await fleet.clone(path.join(home, `${name}-sys.qcow2`), parent.path, fresh ? 'fresh-clone' : 'clone', { writes: fresh ? 0 : rng.int(1, 3) });
    fleet.attach('libvirt', slots, sys);
    if (rng.chance(0.7)) fleet.attach('libvirt', slots, await fleet.rawData(path.join(home, `${name}-data.raw`), 3 * MiB + 4096 * rng.int(0, 8), seed * 5003 + i, 'data'));
    if (i < 2 || rng.chance(0.4)) fleet.attach('libvirt', slots, await fleet.blank(path.join(home, `${name}-blank.${blankFormat === 'raw' ? 'img' : 'qcow2'}`), blankFormat, blankSize));
    if (i >= kvmCount - 2 || rng.chance(0.3)) fleet.attach('libvirt', slots, await fleet.rawData(path.join(home, `${name}-swap.img`), swapSize, seed * 17, 'swap'));
    if (configUsers.has(i)) fleet.attach('libvirt', slots, siteConfig, true);
    await fleet.addVm({ name, uuid: uuid(++vmIndex), type: 'libvirt', configPath: path.join(kvmRoot, `${name}.xml`), slots });
  }

  // --- esx ---
  const shared = path.join(esxRoot, 'shared');
  let vmdkTip = await fleet.imageWithData(path.join(shared, 'gold.vmdk'), 'vmdk', rng.int(2, 3) * MiB, seed * 97, 'base');
  const vmdkBases = [vmdkTip];
  if (rng.chance(0.5)) {
    vmdkTip = await fleet.clone(path.join(shared, 'tier.vmdk'), vmdkTip.path, 'mid', { writes: 1 });
    vmdkBases.push(vmdkTip);
  }
  const quorum = rng.chance(0.7) ? await fleet.imageWithData(path.join(shared, 'quorum.vmdk'), 'vmdk', 2 * MiB, seed * 13, 'quorum', 'monolithicFlat') : undefined;
  const esxCount = rng.int(1, 2);
  for (let i = 0; i < esxCount; i++) {
    const name = `app${i + 1}`;
    const vmDir = path.join(esxRoot, name);
    const slots: Slot[] = [];
    const sys = await fleet.clone(path.join(vmDir, `${name}.vmdk`), rng.pick(vmdkBases).path, 'clone', { writes: rng.int(1, 2) });
    fleet.attach('vmware', slots, sys);
    if (quorum) fleet.attach('vmware', slots, quorum, true);
    if (rng.chance(0.5)) fleet.attach('vmware', slots, await fleet.imageWithData(path.join(vmDir, `${name}-data.vmdk`), 'vmdk', 2 * MiB, seed * 211 + i, 'data'));
    await fleet.addVm({ name, uuid: vmxUuid(seed, ++vmIndex), type: 'vmware', configPath: path.join(vmDir, `${name}.vmx`), slots });
  }

  // --- outer: a libvirt source on another source's files ---
  const outerDir = path.join(outerRoot, 'outer');
  const outerCount = rng.int(1, 2);
  for (let i = 0; i < outerCount; i++) {
    const name = `ops${i + 1}`;
    const home = path.join(outerDir, 'images');
    const slots: Slot[] = [];
    if (fleet.layout === 'nested-libvirt') {
      // A linked clone of a kvm base, its backing file an absolute path into kvm's folder.
      fleet.attach('libvirt', slots, await fleet.clone(path.join(home, `${name}-sys.qcow2`), rng.pick(bases).path, 'clone', { absolute: true, writes: 1 }));
      if (rng.chance(0.7)) fleet.attach('libvirt', slots, siteConfig, true);
      // One of kvm's VMs' own disks, attached here too (a disk two sources' VMs use).
      const kvmData = [...fleet.disks.values()].filter((d) => d.role === 'data' && isInside(kvmRoot, d.path) && fleet.usersNow(d.path).length === 1);
      if (kvmData.length && rng.chance(0.6)) fleet.attach('libvirt', slots, rng.pick(kvmData));
    } else {
      fleet.attach('libvirt', slots, await fleet.clone(path.join(home, `${name}-sys.vmdk`), rng.pick(vmdkBases).path, 'clone', { absolute: true, writes: 1 }));
      if (quorum && rng.chance(0.7)) fleet.attach('libvirt', slots, quorum, true);
    }
    fleet.attach('libvirt', slots, await fleet.rawData(path.join(home, `${name}-data.raw`), 2 * MiB + 512 * rng.int(0, 16), seed * 7001 + i, 'data'));
    if (i === 0) fleet.attach('libvirt', slots, await fleet.blank(path.join(home, `${name}-blank.${blankFormat === 'raw' ? 'img' : 'qcow2'}`), blankFormat, blankSize));
    await fleet.addVm({ name, uuid: uuid(++vmIndex), type: 'libvirt', configPath: path.join(outerDir, `${name}.xml`), slots });
  }
  await fs.rm(path.join(dir, '..', 'scratch'), { recursive: true, force: true });
  return fleet;
}

function vmxUuid(seed: number, index: number): string {
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return `56 4d ${hex(seed & 0xff)} ${hex((seed >> 8) & 0xff)} 00 00 00 ${hex(index)}-00 00 00 00 00 00 00 ${hex(index)}`;
}

// ---- edits and drift ----

/** One random edit the model can follow exactly; returns what it did, or undefined when nothing fits. */
export async function randomEdit(fleet: Fleet, kinds: readonly EditKind[] = EDIT_KINDS): Promise<string | undefined> {
  // Kinds not done yet in this seed are likelier: a few seeds cover every kind of drift.
  const left = kinds.map((kind) => ({ kind, weight: EDIT_WEIGHTS[kind] / (1 + (fleet.editsDone.get(kind) ?? 0)) }));
  while (left.length) {
    let roll = fleet.rng.next() * left.reduce((sum, k) => sum + k.weight, 0);
    const index = Math.max(0, left.findIndex((k) => (roll -= k.weight) < 0));
    const [{ kind }] = left.splice(index, 1);
    const done = await EDITS[kind](fleet);
    if (done) {
      fleet.editsDone.set(kind, (fleet.editsDone.get(kind) ?? 0) + 1);
      return `${kind}: ${done}`;
    }
  }
  return undefined;
}

export const EDIT_KINDS = ['write-private', 'write-shared', 'retarget', 'delete-common', 'delete-private', 'rebase', 'attach-later', 'new-vm', 'rename'] as const;
export type EditKind = (typeof EDIT_KINDS)[number];
/** The edits that make drift for restores of earlier backups (what the planner must notice). */
export const DRIFT_KINDS: readonly EditKind[] = ['write-shared', 'retarget', 'delete-common', 'rebase', 'attach-later', 'new-vm'];
const EDIT_WEIGHTS: Record<EditKind, number> = {
  'write-private': 2, 'write-shared': 2, retarget: 2, 'delete-common': 1, 'delete-private': 1, rebase: 2, 'attach-later': 2, 'new-vm': 1, rename: 1,
};

const intact = (fleet: Fleet, diskPath: string) => !fleet.chain(diskPath).missing;
const liveDisks = (fleet: Fleet) => [...fleet.disks.values()].filter((d) => intact(fleet, d.path) && fleet.usersNow(d.path).length > 0);
const workingVms = (fleet: Fleet) => fleet.vms.filter((vm) => !fleet.broken(vm));

const EDITS: Record<EditKind, (fleet: Fleet) => Promise<string | undefined>> = {
  /** A guest write into a disk only one VM config uses (a VMDK only when no child depends on its CID). */
  async 'write-private'(fleet) {
    const candidates = liveDisks(fleet).filter((d) => fleet.usersNow(d.path).length === 1 && writable(fleet, d));
    if (!candidates.length) return undefined;
    const disk = fleet.rng.pick(candidates);
    return `${fleet.show(disk.path)} (${disk.role}) <- ${await fleet.guestWrite(disk)}`;
  },
  /** A guest write into a disk several VMs use: a qcow2 base under linked clones, or a shared raw disk. */
  async 'write-shared'(fleet) {
    const candidates = liveDisks(fleet).filter((d) => fleet.usersNow(d.path).length > 1 && writable(fleet, d));
    if (!candidates.length) return undefined;
    const disk = fleet.rng.pick(candidates);
    return `${fleet.show(disk.path)} (${disk.role}, used by ${fleet.usersNow(disk.path).map((v) => v.name).join(',')}) <- ${await fleet.guestWrite(disk)}`;
  },
  /** A VM's slot is pointed at another disk: a new one, or one another VM uses. */
  async retarget(fleet) {
    const vms = workingVms(fleet);
    if (!vms.length) return undefined;
    const vm = fleet.rng.pick(vms);
    // Mostly a slot of a disk other VMs use: that is what restores must then notice (drift 'retargeted').
    const shared = vm.slots.filter((s) => fleet.usersNow(s.disk).length > 1);
    const slot = fleet.rng.pick(shared.length && fleet.rng.chance(0.7) ? shared : vm.slots);
    const before = slot.disk;
    const other = fleet.rng.chance(0.5) ? attachable(fleet, vm, slot) : [];
    let target: string;
    if (other.length) {
      target = fleet.rng.pick(other);
    } else {
      const dir = path.dirname(vm.configPath);
      const n = fleet.unique();
      target = vm.type === 'vmware'
        ? (await fleet.imageWithData(path.join(dir, `${vm.name}-new${n}.vmdk`), 'vmdk', 2 * MiB, fleet.seed * 1301 + n, 'data')).path
        : (await fleet.rawData(path.join(dir, 'images', `${vm.name}-new${n}.raw`), 2 * MiB, fleet.seed * 1301 + n, 'data')).path;
    }
    slot.disk = target;
    slot.format = fleet.disks.get(target)!.format;
    slot.readonly = undefined;
    await fleet.writeConfig(vm);
    return `${vm.name} ${slot.slot}: ${fleet.show(before)} -> ${fleet.describeChain(target)}`;
  },
  /** A disk several VMs use is deleted (its VMs, and VMs of its children, fail their next backup). */
  async 'delete-common'(fleet) {
    const candidates = [...fleet.disks.values()].filter((d) => fleet.usersNow(d.path).length > 1);
    if (!candidates.length) return undefined;
    const disk = fleet.rng.pick(candidates);
    const users = fleet.usersNow(disk.path).map((v) => v.name);
    for (const file of fleet.filesOf(disk.path)) await fs.rm(file);
    fleet.disks.delete(disk.path);
    return `${fleet.show(disk.path)} (${disk.role}, used by ${users.join(',')})`;
  },
  /** `qemu-img rebase -u`: a qcow2 linked clone is pointed at another qcow2 parent. */
  async rebase(fleet) {
    const children = liveDisks(fleet).filter((d) => d.format === 'qcow2' && d.parent);
    for (const child of fleet.rng.shuffle(children)) {
      const below = fleet.descendants(child.path);
      const users = fleet.usersNow(child.path);
      const parents = [...fleet.disks.values()].filter((p) => p.format === 'qcow2' && p.path !== child.path && p.path !== child.parent
        && !below.has(p.path) && intact(fleet, p.path) && users.every((vm) => fleet.reachable(vm, p.path)));
      if (!parents.length) continue;
      const parent = fleet.rng.pick(parents);
      const pointer = child.pointer && path.isAbsolute(child.pointer) ? parent.path : path.relative(path.dirname(child.path), parent.path);
      await tool('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', pointer, '-F', 'qcow2', child.path);
      const before = child.parent!;
      child.parent = parent.path;
      child.pointer = pointer;
      return `${fleet.show(child.path)}: parent ${fleet.show(before)} -> ${fleet.show(parent.path)}`;
    }
    return undefined;
  },
  /** A VM starts to use a disk that (usually) another VM uses, in a new slot. */
  async 'attach-later'(fleet) {
    for (const vm of fleet.rng.shuffle(workingVms(fleet))) {
      const candidates = attachable(fleet, vm);
      if (!candidates.length) continue;
      const disk = fleet.rng.pick(candidates);
      const slot = fleet.nextSlot(vm.type, vm.slots);
      vm.slots.push({ slot, disk, format: fleet.disks.get(disk)!.format });
      await fleet.writeConfig(vm);
      return `${vm.name} ${slot} <- ${fleet.describeChain(disk)} (used by ${fleet.usersNow(disk).filter((v) => v !== vm).map((v) => v.name).join(',') || 'nobody else'})`;
    }
    return undefined;
  },
  /** A private raw disk is renamed and its VM's config follows. */
  async rename(fleet) {
    const candidates = liveDisks(fleet).filter((d) => d.format === 'raw' && fleet.usersNow(d.path).length === 1 && d.role !== 'config');
    if (!candidates.length) return undefined;
    const disk = fleet.rng.pick(candidates);
    const vm = fleet.usersNow(disk.path)[0];
    const to = path.join(path.dirname(disk.path), `${path.basename(disk.path).replace(/\.[^.]+$/, '')}-r${fleet.unique()}${path.extname(disk.path)}`);
    await fs.rename(disk.path, to);
    fleet.disks.delete(disk.path);
    const from = disk.path;
    disk.path = to;
    fleet.disks.set(to, disk);
    for (const slot of vm.slots) if (slot.disk === from) slot.disk = to;
    await fleet.writeConfig(vm);
    return `${fleet.show(from)} -> ${path.basename(to)} (${vm.name})`;
  },
  /** A disk only one VM uses is deleted: that VM fails its next backup, its restores must bring the disk back. */
  async 'delete-private'(fleet) {
    const candidates = liveDisks(fleet).filter((d) => fleet.usersNow(d.path).length === 1 && fleet.children(d.path).length === 0);
    if (!candidates.length) return undefined;
    const disk = fleet.rng.pick(candidates);
    for (const file of fleet.filesOf(disk.path)) await fs.rm(file);
    fleet.disks.delete(disk.path);
    return `${fleet.show(disk.path)} (${disk.role}, used by ${fleet.usersNow(disk.path).map((v) => v.name).join(',')})`;
  },
  /** A new VM appears (no backup of it yet) and uses a disk other VMs use, beside a disk of its own. */
  async 'new-vm'(fleet) {
    const homes = fleet.sources.filter((s) => s.type === 'libvirt' && !fleet.sources.some((o) => o !== s && isInside(s.root, o.root)));
    const root = fleet.rng.pick(homes.length ? homes : fleet.sources.filter((s) => s.type === 'libvirt')).root;
    const n = fleet.unique();
    const vm: VmConfig = { name: `late${n}`, uuid: `6f1c2a3e-${(fleet.seed % 0xffff).toString(16).padStart(4, '0')}-4000-9000-${String(n).padStart(12, '0')}`, type: 'libvirt', configPath: path.join(root, `late${n}.xml`), slots: [] };
    fleet.vms.push(vm);
    const shared = attachable(fleet, vm).filter((p) => fleet.usersNow(p).length > 0);
    if (!shared.length) {
      fleet.vms.pop();
      return undefined;
    }
    const disk = fleet.disks.get(fleet.rng.pick(shared))!;
    fleet.attach('libvirt', vm.slots, disk);
    fleet.attach('libvirt', vm.slots, await fleet.rawData(path.join(root, 'images', `late${n}-data.raw`), 2 * MiB, fleet.seed * 4001 + n, 'data'));
    await fleet.writeConfig(vm);
    return `${vm.name} (${fleet.show(vm.configPath)}) uses ${fleet.describeChain(disk.path)} (used by ${fleet.usersNow(disk.path).filter((v) => v !== vm).map((v) => v.name).join(',')})`;
  },
};

/** qemu refuses to read a VMDK child whose parentCID no longer matches: a VMDK with children is never written. */
function writable(fleet: Fleet, disk: Disk): boolean {
  return disk.format !== 'vmdk' || fleet.children(disk.path).length === 0;
}

/** Disks a VM could attach in a slot: reachable, not already among its disks, sharing no chain with its other slots. */
function attachable(fleet: Fleet, vm: VmConfig, replacing?: Slot): string[] {
  const others = vm.slots.filter((s) => s !== replacing).flatMap((s) => fleet.chain(s.disk).paths);
  return [...fleet.disks.values()]
    .filter((d) => (vm.type === 'libvirt' || d.format === 'vmdk') && fleet.reachable(vm, d.path) && (!replacing || d.path !== replacing.disk))
    .filter((d) => fleet.chain(d.path).paths.every((p) => !others.includes(p)))
    .map((d) => d.path);
}

/**
 * A source's folder moves (renamed beside itself) and the source is pointed at the new folder, as an
 * administrator does for a datastore that moved. Only a source that no file outside it points into by absolute
 * path, and that holds no other source, can move without breaking the model. Returns the moved source.
 */
export async function relocateSource(fleet: Fleet): Promise<{ source: Source; from: string } | undefined> {
  const movable = fleet.sources.filter((source) => {
    const inside = (p: string) => isInside(source.root, p);
    if (fleet.sources.some((other) => other !== source && isInside(source.root, other.root))) return false;
    if ([...fleet.disks.values()].some((d) => !inside(d.path) && d.parent && inside(d.parent))) return false;
    if ([...fleet.disks.values()].some((d) => inside(d.path) && d.pointer && path.isAbsolute(d.pointer))) return false;
    return !fleet.vms.some((vm) => vm.slots.some((slot) => inside(slot.disk) !== inside(vm.configPath)));
  });
  if (!movable.length) return undefined;
  const source = fleet.rng.pick(movable);
  const from = source.root;
  const to = `${from}-moved${fleet.unique()}`;
  await fs.rename(from, to);
  fleet.moves.push({ from, to });
  const moved = (p: string) => (isInside(from, p) ? path.join(to, path.relative(from, p)) : p);
  const disks = [...fleet.disks.values()];
  fleet.disks.clear();
  for (const disk of disks) {
    disk.path = moved(disk.path);
    disk.extents = disk.extents.map(moved);
    if (disk.parent) disk.parent = moved(disk.parent);
    fleet.disks.set(disk.path, disk);
  }
  for (const vm of fleet.vms) {
    vm.configPath = moved(vm.configPath);
    for (const slot of vm.slots) slot.disk = moved(slot.disk);
  }
  source.root = to;
  return { source, from };
}

// ---- snapshots: what the fleet holds ----

export type FileHashes = Map<string, string>;

export async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

/** sha256 of every regular file under a folder. */
export async function hashTree(dir: string): Promise<FileHashes> {
  const out: FileHashes = new Map();
  if (!(await exists(dir))) return out;
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out.set(file, await sha256File(file));
  }
  return out;
}

/** A cheap fingerprint of every file under a folder (any write changes size, mtime or ctime). */
export async function statTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const st = await fs.lstat(file, { bigint: true });
    out.set(file, entry.isDirectory() ? 'dir' : `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`);
  }
  return out;
}

export function diffHashes(before: Map<string, string>, after: Map<string, string>): { changed: string[]; created: string[]; deleted: string[] } {
  const changed: string[] = [];
  const created: string[] = [];
  const deleted: string[] = [];
  for (const [file, hash] of after) {
    if (!before.has(file)) created.push(file);
    else if (before.get(file) !== hash) changed.push(file);
  }
  for (const file of before.keys()) if (!after.has(file)) deleted.push(file);
  return { changed, created, deleted };
}

/** A disk's guest view: its content through its whole chain, as a raw file in the model's store. */
export type GuestView = { sha256: string; file: string; virtualSize: number };

export class ViewStore {
  /** Views by the bytes of the chain they read (each file's path and sha256): an unchanged chain is not converted again. */
  private readonly known = new Map<string, Promise<{ view?: GuestView; viewError?: string }>>();
  constructor(readonly dir: string) {}

  viewOf(fleet: Fleet, disk: Disk, hashes: FileHashes): Promise<{ view?: GuestView; viewError?: string }> {
    const key = fleet.chain(disk.path).paths.flatMap((p) => fleet.filesOf(p).map((f) => `${f}=${hashes.get(f)}`)).join('\n');
    let found = this.known.get(key);
    if (!found) {
      found = this.capture(disk.path, disk.format).then((view) => ({ view }), (err: Error) => ({ viewError: err.message }));
      this.known.set(key, found);
    }
    return found;
  }

  async capture(diskPath: string, format: Format): Promise<GuestView> {
    await fs.mkdir(this.dir, { recursive: true });
    const temp = path.join(this.dir, `.${randomBytes(6).toString('hex')}.raw`);
    await tool('qemu-img', 'convert', '-f', format, '-O', 'raw', diskPath, temp);
    const sha256 = await sha256File(temp);
    const file = path.join(this.dir, `${sha256}.raw`);
    const { size } = await fs.stat(temp);
    await fs.rename(temp, file);
    return { sha256, file, virtualSize: size };
  }
}

/** One disk as a backup found it, per the model. */
export type DiskAtBackup = {
  path: string;
  /** Relative to the root of the source the backup was made from. */
  relPath: string;
  format: Format;
  parent?: string;
  role: string;
  files: { path: string; relPath: string; sha256: string }[];
  view?: GuestView;
  viewError?: string;
};

/** What one backup image must restore, per the model. */
export type VmRecord = {
  key: string;
  backupId: string;
  round: number;
  source: Source;
  vm: VmConfig;
  configRel: string;
  /** The config file as the backup read it. */
  configText: string;
  disks: DiskAtBackup[];
  /** (source, VM) pairs that used each disk at this backup. */
  pairUsers: Map<string, string[]>;
};

/** A record's paths as they are now (after any folder moves since the backup). */
export function recordNow(fleet: Fleet, record: VmRecord): { configPath: string; root: string; disk: (d: DiskAtBackup) => string } {
  return { configPath: fleet.now(record.vm.configPath), root: fleet.now(record.source.root), disk: (d) => fleet.now(d.path) };
}

/** The model's record of one backup round: every (source, VM) that must be in it, with its disks' bytes. */
export async function recordRound(fleet: Fleet, round: number, hashes: FileHashes, views: ViewStore, ids: Map<string, string>): Promise<VmRecord[]> {
  const viewOf = (disk: Disk) => views.viewOf(fleet, disk, hashes);
  const records: VmRecord[] = [];
  for (const { source, vm, key } of fleet.pairs()) {
    if (fleet.broken(vm)) continue;
    const backupId = ids.get(key);
    if (!backupId) continue;
    const { paths } = fleet.closure(vm);
    const disks: DiskAtBackup[] = [];
    const pairUsers = new Map<string, string[]>();
    for (const p of paths) {
      const disk = fleet.disks.get(p)!;
      disks.push({
        path: p, relPath: path.relative(source.root, p), format: disk.format, parent: disk.parent, role: disk.role,
        files: fleet.filesOf(p).map((file) => ({ path: file, relPath: path.relative(source.root, file), sha256: hashes.get(file)! })),
        ...(await viewOf(disk)),
      });
      pairUsers.set(p, fleet.pairUsersNow(p));
    }
    records.push({
      key, backupId, round, source: { ...source }, vm: structuredClone(vm),
      configRel: path.relative(source.root, vm.configPath), configText: await fs.readFile(vm.configPath, 'utf8'), disks, pairUsers,
    });
  }
  return records;
}

// ---- reading what a restore wrote ----

export type ConfigSlot = { slot: string; file: string; format?: string };

/** The disk slots of a config written by a restore, each resolved against the config's folder. */
export async function readConfigSlots(configPath: string, type: SourceType): Promise<ConfigSlot[]> {
  const text = await fs.readFile(configPath, 'utf8');
  const dir = path.dirname(configPath);
  if (type === 'libvirt') {
    const unescape = (v: string) => v.replace(/&apos;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    return [...text.matchAll(/<disk\b[\s\S]*?<\/disk>/g)].map(([block]) => ({
      slot: /<target\b[^>]*\bdev=(['"])(.*?)\1/.exec(block)?.[2] ?? '?',
      file: path.resolve(dir, unescape(/<source\b[^>]*\bfile=(['"])(.*?)\1/.exec(block)?.[2] ?? '')),
      format: /<driver\b[^>]*\btype=(['"])(.*?)\1/.exec(block)?.[2],
    }));
  }
  return [...text.matchAll(/^([A-Za-z]+\d+:\d+)\.fileName\s*=\s*"([^"]*)"/gim)].map((m) => ({
    slot: m[1].toLowerCase(), file: path.resolve(dir, m[2].replace(/\|22/g, '"')), format: 'vmdk',
  }));
}

/** A config with its disk pointers blanked: what a restore must leave exactly as it was backed up. */
export function configShape(text: string, type: SourceType): string {
  return type === 'libvirt'
    ? text.replace(/(<source\b[^>]*\bfile=)(['"])(.*?)\2/g, '$1$2<disk>$2')
    : text.replace(/^(\s*[A-Za-z]+\d+:\d+\.fileName\s*=\s*)"[^"]*"/gim, '$1"<disk>"');
}

export type ChainElement = { file: string; format: string; virtualSize: number; backing?: string };

/** `qemu-img info --backing-chain`: every image of a chain, canonical paths. Throws when the chain does not resolve. */
export async function backingChain(file: string, format: string): Promise<ChainElement[]> {
  const info = JSON.parse(await tool('qemu-img', 'info', '--backing-chain', '--output=json', '-f', format, file)) as {
    filename: string; format: string; 'virtual-size': number; 'backing-filename'?: string;
  }[];
  const out: ChainElement[] = [];
  for (const image of info) {
    out.push({ file: await fs.realpath(image.filename).catch(() => path.resolve(image.filename)), format: image.format, virtualSize: image['virtual-size'], backing: image['backing-filename'] });
  }
  return out;
}

/** A VMDK's descriptor fields (text descriptor, or the one embedded in a monolithicSparse file). */
export async function vmdkDescriptor(file: string): Promise<{ cid?: string; parentCid?: string; hint?: string }> {
  const bytes = await fs.readFile(file);
  let text: string;
  if (bytes.length >= 44 && bytes.readUInt32LE(0) === 0x564d444b) {
    const offset = Number(bytes.readBigUInt64LE(28)) * 512;
    const size = Number(bytes.readBigUInt64LE(36)) * 512;
    text = bytes.subarray(offset, offset + size).toString('latin1');
  } else {
    text = bytes.subarray(0, Math.min(bytes.length, 64 * 1024)).toString('latin1');
  }
  text = text.split('\0')[0];
  return {
    cid: /^CID=([0-9a-f]+)/im.exec(text)?.[1]?.toLowerCase(),
    parentCid: /^parentCID=([0-9a-f]+)/im.exec(text)?.[1]?.toLowerCase(),
    hint: /^parentFileNameHint="([^"]*)"/im.exec(text)?.[1],
  };
}
