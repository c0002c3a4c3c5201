import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { formatTime } from '../../format';
import { InputError } from '../errors';
import { type BackupDiskEntry, type BackupImageManifest, diskFilesOf } from '../repository/manifests';
import type { Repository } from '../repository/repository';
import { isInside, resolvedRoot } from '../containment';
import type { SourceInventory, VmInventory } from '../sources/inventory';
import { type DiskAreas, type VirtualDisk, inspectDisk } from '../sources/virtual-disk';
import { checkInside } from './destinations';

export const RESTORE_POLICIES = ['no-overwrite', 'overwrite'] as const;
export type RestorePolicy = (typeof RESTORE_POLICIES)[number];
export const RESTORE_CHOICES = ['reattach', 'copy'] as const;
export type RestoreChoice = (typeof RESTORE_CHOICES)[number];
export type RestoreTarget = { kind: 'folder'; dir: string } | { kind: 'in-place' };

export type DriftKind = 'retargeted' | 'modified' | 'missing' | 'parent-changed';
export type Drift = {
  /** The disk's path as recorded at backup time. */
  disk: string;
  kind: DriftKind;
  recorded: Record<string, unknown>;
  current: Record<string, unknown>;
  /** Other VMs that use the disk now (live scan of every source), and that used it at backup time (the image). */
  sharedWith: string[];
  sharedAtBackup: string[];
};

export type DiskAction = 'restored' | 'skipped-common' | 'reattached' | 'copied' | 'overwritten';

/** One file a restore writes: its name from the image's disk entry, and where it lands. */
export type PlannedFile = { name: string; destination: string };

export type PlannedDisk = {
  entry: BackupDiskEntry;
  common: boolean;
  action: DiskAction;
  /** Where the backed-up copy's main file is written (restored, copied, overwritten); absent when nothing is written. */
  destination?: string;
  /** Every file written for this disk, main file first (checked to lie inside the restore's root). */
  files?: PlannedFile[];
  /** The file the restored VM (or child disk) will point at. */
  pointTo: string;
  /** Other VMs that use this disk now, and that used it at the backup. */
  sharedWith: string[];
  sharedAtBackup: string[];
};

export type RestorePlan = {
  vm: string;
  backupId: string;
  backupCreatedAt: string;
  policy: RestorePolicy;
  choice: RestoreChoice;
  target: RestoreTarget;
  status: 'planned' | 'needs-confirmation';
  message: string;
  drift: Drift[];
  disks: PlannedDisk[];
  configDestination: string;
  /** The folder the restore's relative names are taken from (resolved): the target folder, or in place the live
   *  source's root (see SourceInventory.root). */
  root: string;
  /** Every file of the restore lands inside one of these folders (resolved): the target folder, or in place the
   *  live source's folders (its config folder and storage folders). */
  areas: string[];
  /** What the live state could not tell (a source that could not be read): said in the message too. */
  warnings: string[];
  /** How the VM was held when backed up (domains of a libvirt connection); said in the message too. */
  consistency?: BackupImageManifest['consistency'];
  /** Changes whenever anything the user confirmed would change: drift found, actions, destinations, who shares what. */
  fingerprint: string;
  /** Set when the plan, with the chosen options, cannot be carried out (reattaching a disk that is gone). */
  cannotExecute?: string;
};

/** The fleet as it is now: the image's own source and every other registered one. */
export type LiveState = {
  /** The image's source scanned now; undefined when its folder cannot be read (then only folder restores plan). */
  source?: SourceInventory;
  /** Every other registered source, scanned now. */
  others: SourceInventory[];
  /** Sources that could not be read: their VMs cannot be counted, and the plan says so. `folders`: the folders the
   *  catalog has for it (config folder, storage folders): still its own, no folder restore lands in them. */
  unreadable: { name: string; error: string; folders?: string[] }[];
};

export type PlanOptions = {
  image: BackupImageManifest;
  live: LiveState;
  target: RestoreTarget;
  /** Reads stored disks (format-1 images name their extents only there). */
  repo: Pick<Repository, 'getStoredDisk'>;
  policy?: RestorePolicy;
  choice?: RestoreChoice;
};

/** Plans a restore: reads the backup image and the live fleet, writes nothing. */
export async function planRestore(options: PlanOptions): Promise<RestorePlan> {
  const { image, live, target } = options;
  const policy = options.policy ?? 'no-overwrite';
  const choice = options.choice ?? 'reattach';
  const source = live.source;
  if (!source && target.kind === 'in-place') {
    const why = live.unreadable.find((u) => u.name === image.source.name)?.error ?? `source '${image.source.name}' cannot be read`;
    throw new InputError(`cannot restore in place: ${why}; restore to a folder instead`);
  }
  if (target.kind === 'folder') {
    // The target as the filesystem resolves it: a symlink into a source is inside that source.
    const targetDir = await resolvedRoot(target.dir);
    const through = targetDir === path.resolve(target.dir) ? '' : ` (it resolves to ${targetDir})`;
    // A source that cannot be read now (a storage folder unmounted) still owns its folders: a VM copied into its
    // config folder would become one of its VMs.
    const unreadableFolders = await Promise.all(live.unreadable.flatMap((u) => u.folders ?? []).map((dir) => resolvedRoot(dir)));
    for (const areas of [...[source, ...live.others].map((inventory) => inventory?.areas ?? []), unreadableFolders]) {
      const area = areas.find((dir) => isInside(dir, targetDir));
      if (area) throw new InputError(`target folder lies inside the source ${area}${through}; restore to a folder outside it, or use --in-place`, { file: target.dir });
    }
  }
  const liveRoot = liveRootOf(source, image);
  const livePath = (entry: BackupDiskEntry) => path.join(liveRoot, entry.relativePath);
  const liveVm = await ownVmNow(source, image);
  if (target.kind === 'in-place' && liveVm && liveVm.configPath !== (await liveConfigPath(source!, image))) {
    const now = path.relative(source!.root, liveVm.configPath);
    throw new InputError(`${image.vm.name}'s config is ${now} now, not ${relativeConfigPath(image)} as at the backup: restoring in place would define ${image.vm.name} a second time; restore to a folder, or move the config back`, { file: liveVm.configPath });
  }
  const { users, foreignFiles } = await usersNow(live, liveVm, image.vm.name);
  const othersUsing = (entry: BackupDiskEntry) => users.get(livePath(entry)) ?? [];
  const atBackup = (entry: BackupDiskEntry) => entry.usedBy.filter((name) => name !== image.vm.name);
  const drift: Drift[] = [];
  const commonPaths = new Set<string>();
  for (const entry of image.disks) if (entry.common || othersUsing(entry).length > 0) commonPaths.add(entry.path);
  const liveDisks = new Map<string, VirtualDisk | undefined>();

  for (const entry of image.disks) {
    const common = commonPaths.has(entry.path);
    const parentCommon = entry.parent !== undefined && commonPaths.has(entry.parent.path);
    if (!common && !parentCommon) continue;
    const shared = { sharedWith: othersUsing(entry), sharedAtBackup: atBackup(entry) };
    const at = (kind: DriftKind, recorded: Record<string, unknown>, current: Record<string, unknown>) => drift.push({ disk: entry.path, kind, recorded, current, ...shared });

    if (common && entry.via === 'attached' && entry.slot) {
      const slotNow = await slotTargetNow(liveVm, entry.slot);
      if (slotNow === undefined) at('retargeted', { slot: entry.slot, path: entry.path }, { slot: entry.slot, path: null });
      else if (slotNow !== livePath(entry)) at('retargeted', { slot: entry.slot, path: entry.path }, { slot: entry.slot, path: slotNow });
    }
    let now: VirtualDisk | undefined;
    try {
      now = source ? source.disks.get(livePath(entry)) ?? (await inspectDisk(areasOf(source), livePath(entry), entry.format))?.disk : undefined;
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      if (common) at('modified', { version: entry.versionToken }, { error: err.message });
      liveDisks.set(entry.path, undefined);
      continue;
    }
    liveDisks.set(entry.path, now);
    if (!now) {
      if (common) at('missing', { path: entry.path, version: entry.versionToken }, { path: null });
      continue;
    }
    if (common && now.versionToken !== entry.versionToken) {
      // For a person: its size then and now and when it changed (the tokens say only that it did).
      const changedAt = await fs.stat(livePath(entry)).then((stat) => stat.mtime.toISOString(), () => null);
      at('modified', { version: entry.versionToken, size: entry.logicalBytes, backedUpAt: image.createdAt }, { version: now.versionToken, size: now.logicalBytes, changedAt });
    }
    if (entry.parent) {
      const recordedParent = path.join(liveRoot, path.relative(image.source.path, entry.parent.path));
      if (now.parent?.path !== recordedParent) {
        at('parent-changed', { parent: entry.parent.path, pointer: entry.parent.pointer }, { parent: now.parent?.path ?? null, pointer: now.parent?.pointer ?? null });
      } else if (now.vmdk) {
        const parentNow = source!.disks.get(now.parent.path) ?? (await inspectDisk(areasOf(source!), now.parent.path).catch(() => undefined))?.disk;
        if (parentNow?.vmdk && parentNow.vmdk.cid !== now.vmdk.parentCid) {
          at('parent-changed', { parentCid: now.vmdk.parentCid }, { parentCid: now.vmdk.parentCid, parentsCid: parentNow.vmdk.cid });
        }
      }
    }
  }

  const drifted = new Set(drift.map((d) => d.disk));
  const copyDir = target.kind === 'folder' ? path.resolve(target.dir) : path.join(path.dirname(path.join(liveRoot, relativeConfigPath(image))), `restored-${image.id}`);
  const inFolder = (entry: BackupDiskEntry, dir: string) => path.join(dir, entry.relativePath);
  const actions = new Map<string, { action: DiskAction; destination?: string; pointTo: string }>();
  for (const entry of image.disks) {
    const common = commonPaths.has(entry.path);
    const write = (action: DiskAction, destination: string) => actions.set(entry.path, { action, destination, pointTo: destination });
    if (!common) write('restored', target.kind === 'folder' ? inFolder(entry, copyDir) : livePath(entry));
    else if (policy === 'overwrite') {
      if (target.kind === 'folder') write('restored', inFolder(entry, copyDir));
      else write('overwritten', livePath(entry));
    } else if (!drifted.has(entry.path)) actions.set(entry.path, { action: 'skipped-common', pointTo: livePath(entry) });
    else if (choice === 'copy') write('copied', inFolder(entry, copyDir));
    else {
      const retarget = drift.find((d) => d.disk === entry.path && d.kind === 'retargeted');
      actions.set(entry.path, { action: 'reattached', pointTo: (retarget?.current.path as string | undefined) ?? livePath(entry) });
    }
  }
  // A copied disk takes its unwritten descendants along: the live child still points at the live parent.
  if (choice === 'copy' && policy === 'no-overwrite') {
    for (let changed = true; changed; ) {
      changed = false;
      for (const entry of image.disks) {
        const planned = actions.get(entry.path)!;
        const parent = entry.parent ? actions.get(entry.parent.path) : undefined;
        if (!planned.destination && parent?.destination && commonPaths.has(entry.path)) {
          const destination = inFolder(entry, copyDir);
          actions.set(entry.path, { action: 'copied', destination, pointTo: destination });
          changed = true;
        }
      }
    }
  }

  const root = await resolvedRoot(target.kind === 'folder' ? target.dir : liveRoot);
  const areas = target.kind === 'folder' ? [root] : await Promise.all(source!.areas.map((area) => resolvedRoot(area)));
  const disks: PlannedDisk[] = [];
  for (const entry of image.disks) {
    const planned = actions.get(entry.path)!;
    const disk: PlannedDisk = { entry, common: commonPaths.has(entry.path), ...planned, sharedWith: othersUsing(entry), sharedAtBackup: atBackup(entry) };
    if (planned.destination) {
      const names = entry.files?.map((f) => f.name) ?? diskFilesOf(entry, await options.repo.getStoredDisk(entry.digest)).map((f) => f.name);
      disk.files = [];
      for (const [index, name] of names.entries()) {
        const what = `${entry.relativePath}${index ? ` (file ${name})` : ''}`;
        const destination = await checkInside(areas, index === 0 ? planned.destination : path.join(path.dirname(planned.destination), name), what);
        // Only an explicit overwrite of a common disk may write a file that another VM uses now.
        const user = foreignFiles.get(destination);
        if (user && planned.action !== 'overwritten') throw new InputError(`${what} would be written over a file that ${user} uses now; nothing was written`, { file: destination });
        disk.files.push({ name, destination });
      }
      // Where it lands as resolved: pointers to it are then relative inside the target, never through a symlink.
      disk.destination = disk.pointTo = disk.files[0].destination;
    }
    disks.push(disk);
  }
  const configDestination = await checkInside(areas, path.join(target.kind === 'folder' ? copyDir : liveRoot, relativeConfigPath(image)), `the config of ${image.vm.name}`);
  if (foreignFiles.has(configDestination)) throw new InputError(`the config of ${image.vm.name} would be written over a file that ${foreignFiles.get(configDestination)} uses now; nothing was written`, { file: configDestination });
  const written = [configDestination, ...disks.flatMap((d) => d.files?.map((f) => f.destination) ?? [])];
  const twice = written.find((file, index) => written.indexOf(file) !== index);
  if (twice) throw new InputError(`two files of this restore would be written to the same place; the backup image ${image.id} is inconsistent`, { file: twice });

  const cannotExecute = whyNotExecutable(image, disks, drift, policy, choice);
  const overwritesCommon = disks.some((d) => d.action === 'overwritten');
  const warnings = live.unreadable.map((u) => `source '${u.name}' could not be read (${u.error}): VMs there that use these disks are not counted.`);
  const plan: RestorePlan = {
    vm: image.vm.name, backupId: image.id, backupCreatedAt: image.createdAt, policy, choice, target,
    // In place, a source that could not be read may hold VMs that use what is written: the person confirms that.
    status: drift.length > 0 || overwritesCommon || (target.kind === 'in-place' && live.unreadable.length > 0) ? 'needs-confirmation' : 'planned',
    message: '', drift, disks, configDestination, root, areas, warnings, fingerprint: '', cannotExecute,
    ...(image.consistency ? { consistency: image.consistency } : {}),
  };
  plan.message = describePlan(plan);
  plan.fingerprint = createHash('sha256')
    .update(JSON.stringify({
      // What is written: the backed-up content, names and config (the image), and where and how (below).
      image: createHash('sha256').update(JSON.stringify(image)).digest('hex'),
      // The state itself, not what is shown about it (sizes and times, which the version token already covers): a plan
      // confirmed before those were shown stays the same plan.
      drift: drift.map((d) => [d.kind, d.disk, withoutShownOnly(d.current), d.sharedWith]),
      disks: disks.map((d) => [d.entry.path, d.action, d.files?.map((f) => f.destination), d.pointTo, d.sharedWith]),
      config: configDestination, warnings,
    }))
    .digest('hex');
  return plan;
}

/** Why the chosen options cannot be carried out: a common disk that is gone, or a changed parent under a restored child. */
function whyNotExecutable(image: BackupImageManifest, disks: PlannedDisk[], drift: Drift[], policy: RestorePolicy, choice: RestoreChoice): string | undefined {
  if (policy !== 'no-overwrite' || choice !== 'reattach') return undefined;
  const gone = drift.find((d) => d.kind === 'missing' || (d.kind === 'retargeted' && d.current.path === null));
  if (gone) return `the shared disk ${path.basename(gone.disk)} ${gone.kind === 'missing' ? 'is missing' : 'is no longer attached to the VM'}: it cannot be reattached; use --choice copy to restore the backed-up version beside the VM`;
  // A restored child reads through its parent: a parent whose content changed since the backup would give the child
  // wrong data (and, for VMDK, writing the live parent's CID into it would silence VMware's own check).
  // Every ancestor it reads through counts, not only its parent: a changed grandparent changes the child's data too.
  for (const child of disks) {
    if (!child.destination || !child.entry.parent) continue;
    const through: string[] = [];
    for (let parent = disks.find((d) => d.entry.path === child.entry.parent!.path); parent && !parent.destination && through.length < disks.length;
      parent = parent.entry.parent ? disks.find((d) => d.entry.path === parent!.entry.parent!.path) : undefined) {
      const name = path.basename(parent.entry.path);
      const on = through.length ? `restored on ${listOf(through)}, which read${through.length === 1 ? 's' : ''} through it,` : 'restored on it';
      const changed = drift.find((d) => d.disk === parent!.entry.path && (d.kind === 'modified' || d.kind === 'parent-changed'));
      if (changed?.kind === 'modified') return `the base image ${name} was modified after this backup: ${path.basename(child.entry.path)} ${on} would read changed data; use --choice copy to restore the backed-up base beside the VM`;
      if (changed) return `the parent link of the base image ${name} changed after this backup: ${path.basename(child.entry.path)} ${on} would read another chain; use --choice copy to restore the backed-up base beside the VM`;
      through.push(name);
    }
  }
  return undefined;
}

/**
 * The folder that the image's relative paths are taken from now. Where the VM lived at the backup, when that is still
 * part of the live source (a storage folder added since widens the source's root, and the files stayed where they
 * were); else the source's root today (a source re-pointed at a moved datastore keeps its layout).
 */
function liveRootOf(source: SourceInventory | undefined, image: BackupImageManifest): string {
  if (!source || source.root === image.source.path) return source?.root ?? image.source.path;
  const recorded = image.source.path;
  const stillThere = source.areas.some((area) => isInside(area, recorded)) || isInside(recorded, source.root);
  return stillThere ? recorded : source.root;
}

function areasOf(inventory: SourceInventory): DiskAreas {
  return { base: inventory.root, areas: inventory.areas };
}

/** The config's path relative to the source root at backup time. */
function relativeConfigPath(image: BackupImageManifest): string {
  return image.vm.relativeConfigPath ?? path.relative(image.source.path, image.vm.configPath);
}

/**
 * Who uses each disk now, by canonical path, across every source that could be read: VMs whose configs attach it
 * directly or through a parent chain, also when their config has an error (by the paths the config names). The VM
 * being restored (`own`) is left out, also where another source reaches its config file; another config that
 * defines the same name is another VM, labelled by its config's path.
 */
async function usersNow(live: LiveState, own: VmInventory | undefined, vmName: string): Promise<{ users: Map<string, string[]>; foreignFiles: Map<string, string> }> {
  const users = new Map<string, Set<string>>();
  // Every file another VM needs now (its config, each file of each disk it uses): never written by this restore.
  const foreignFiles = new Map<string, string>();
  // One config file is one VM, however many sources reach it: counted once, under the first source that does
  // (the VM being restored is `own`, see ownVmNow; any other config, also one that defines the same name, is another VM).
  const seenConfigs = new Set<string>(own ? [own.configPath] : []);
  for (const inventory of [live.source, ...live.others]) {
    if (!inventory) continue;
    const ownSource = inventory === live.source;
    for (const vm of inventory.vms) {
      if (seenConfigs.has(vm.configPath)) continue;
      seenConfigs.add(vm.configPath);
      const sameName = ownSource && vm.name === vmName;
      const label = !ownSource ? `${vm.name} (source ${inventory.source.name})` : sameName ? `${vm.name} (${path.relative(inventory.root, vm.configPath)})` : vm.name;
      const paths = new Set(vm.disks.map((use) => use.diskPath));
      for (const named of vm.namedPaths) {
        // A named file and, where it can be read, its parent chain (a broken VM's chain was not resolved by the scan).
        let current: string | undefined = named;
        for (let depth = 0; current && !paths.has(current) && depth < 256; depth++) {
          paths.add(current);
          const known = inventory.disks.get(current);
          current = known ? known.parent?.path : (await inspectDisk(areasOf(inventory), current).catch(() => undefined))?.disk.parent?.path;
        }
      }
      foreignFiles.set(vm.configPath, label);
      for (const diskPath of paths) {
        let labels = users.get(diskPath);
        if (!labels) users.set(diskPath, (labels = new Set()));
        labels.add(label); // a Set: a disk shared by thousands of VMs must not cost thousands² comparisons
        for (const file of inventory.disks.get(diskPath)?.files ?? [diskPath]) foreignFiles.set(file, label);
      }
    }
  }
  return { users: new Map([...users].map(([diskPath, labels]) => [diskPath, [...labels]])), foreignFiles };
}

/** Where the VM's config would be now: the backed-up relative path under the source's root today (canonical). */
async function liveConfigPath(source: SourceInventory, image: BackupImageManifest): Promise<string> {
  const expected = path.join(liveRootOf(source, image), relativeConfigPath(image));
  return fs.realpath(expected).catch(() => expected);
}

/**
 * The VM being restored, as it is now in its source: the VM whose config sits where the backed-up one did (when it
 * still has that name; a config there that names another VM is another VM), else the only VM of that name (its
 * config moved). Several VMs of that name elsewhere and none there: none is taken for it, each counts as another VM.
 */
async function ownVmNow(source: SourceInventory | undefined, image: BackupImageManifest): Promise<VmInventory | undefined> {
  if (!source) return undefined;
  const expected = await liveConfigPath(source, image);
  const there = source.vms.find((vm) => vm.configPath === expected);
  if (there) return there.name === image.vm.name ? there : undefined;
  const named = source.vms.filter((vm) => vm.name === image.vm.name);
  return named.length === 1 ? named[0] : undefined;
}

/** Where a VM's disk slot points now (canonical when the file exists); undefined when the slot is gone. */
async function slotTargetNow(vm: VmInventory | undefined, slot: string): Promise<string | undefined> {
  const use = vm?.disks.find((d) => d.via === 'attached' && d.slot === slot);
  if (use) return use.diskPath;
  const configured = vm?.slots.find((s) => s.slot === slot && s.backedUp && s.path);
  if (!configured?.path) return undefined;
  return fs.realpath(configured.path).catch(() => configured.path!);
}

/** The plan in words, for a person: what changed, who is affected, what confirming will do. */
function describePlan(plan: RestorePlan): string {
  const when = formatWhen(plan.backupCreatedAt);
  const sentences: string[] = [];
  for (const d of plan.drift) {
    const name = path.basename(d.disk);
    const gone = d.sharedAtBackup.filter((name) => !d.sharedWith.includes(name));
    const usedBy = d.sharedWith.length ? ` (used by ${listOf(d.sharedWith)})` : gone.length ? ` (no other VM uses it now; ${listOf(gone)} did at the backup)` : '';
    if (d.kind === 'modified') sentences.push(`The shared disk ${name}${usedBy} was modified after this backup of ${when}.`);
    if (d.kind === 'missing') sentences.push(`The shared disk ${name}${usedBy} is missing: at the backup of ${when} it was ${d.disk}.`);
    if (d.kind === 'retargeted') {
      sentences.push(d.current.path === null
        ? `${plan.vm}'s disk slot ${d.recorded.slot} pointed at the shared disk ${name} at the backup of ${when} and is gone from its config now.`
        : `${plan.vm}'s disk slot ${d.recorded.slot} pointed at the shared disk ${name} at the backup of ${when} and points at ${d.current.path} now.`);
    }
    if (d.kind === 'parent-changed') {
      sentences.push('parentsCid' in d.current
        ? `The parent of ${name} changed after this backup of ${when}: its parentCID ${d.current.parentCid} no longer matches the parent's CID ${d.current.parentsCid}.`
        : `The parent link of ${name} changed after this backup of ${when}: it named ${d.recorded.parent} and names ${d.current.parent ?? 'nothing'} now.`);
    }
  }
  const written = plan.disks.filter((d) => d.destination && !d.common).length;
  const other = `${written} other disk${written === 1 ? '' : 's'}`;
  const overwritten = plan.disks.filter((d) => d.action === 'overwritten');
  if (plan.policy === 'overwrite' && overwritten.length) {
    const affected = [...new Set(overwritten.flatMap((d) => d.sharedWith))];
    sentences.push(`Policy overwrite writes the shared disk${overwritten.length > 1 ? 's' : ''} ${listOf(overwritten.map((d) => path.basename(d.entry.path)))} in place${affected.length ? `: ${listOf(affected)} use${affected.length === 1 ? 's' : ''} ${overwritten.length > 1 ? 'them' : 'it'} and will see the backed-up version` : ''}. Confirm to proceed.`);
  } else if (plan.policy === 'overwrite' && plan.disks.some((d) => d.common && d.destination)) {
    // Into a folder, overwrite writes no shared disk in place: it restores them with the VM, as backed up.
    const shared = plan.disks.filter((d) => d.common && d.destination);
    const where = path.dirname(plan.configDestination);
    sentences.push(`Policy overwrite restores the shared disk${shared.length > 1 ? 's' : ''} ${listOf(shared.map((d) => path.basename(d.entry.path)))} as backed up, with the ${other}, into ${where}; nothing is written in place${plan.drift.length ? '. Confirm to proceed.' : '.'}`);
  } else if (plan.drift.length) {
    const copied = plan.disks.filter((d) => d.action === 'copied').map((d) => path.basename(d.entry.path));
    sentences.push(plan.choice === 'copy'
      ? `Policy no-overwrite keeps shared disks as they are. Confirm to restore the ${other} and a copy of ${listOf(copied)} as backed up, beside the VM in ${path.dirname(plan.disks.find((d) => d.action === 'copied')?.destination ?? plan.configDestination)}.`
      : plan.cannotExecute
        ? `Policy no-overwrite keeps shared disks as they are. Choose copy to restore the backed-up version beside the VM and the ${other}.`
        : `Policy no-overwrite keeps shared disks as they are. Confirm to restore the ${other} and attach the current shared disk, or choose copy to restore the backed-up version beside the VM.`);
  } else {
    const kept = plan.disks.filter((d) => d.action === 'skipped-common').map((d) => path.basename(d.entry.path));
    sentences.push(`No drift since the backup of ${when}: ${written} disk${written === 1 ? '' : 's'} will be restored${kept.length ? `; the shared disk${kept.length > 1 ? 's' : ''} ${listOf(kept)} stay${kept.length > 1 ? '' : 's'} as ${kept.length > 1 ? 'they are' : 'it is'} and the VM points at ${kept.length > 1 ? 'them' : 'it'}` : ''}.`);
  }
  if (plan.consistency) sentences.push(CONSISTENCY_SAID[plan.consistency]);
  sentences.push(...plan.warnings);
  return sentences.join(' ');
}

const CONSISTENCY_SAID: Record<NonNullable<RestorePlan['consistency']>, string> = {
  application: 'The backup is application-consistent: the guest agent froze its file systems while it was taken.',
  crash: 'The backup is crash-consistent: every disk as at one moment, as after a power cut (no guest agent froze it).',
  offline: 'The backup was taken while the VM was shut off.',
};

/** A drift's fields that are there for the reader only (a modified disk's size and change time), left out of the fingerprint. */
function withoutShownOnly(current: Record<string, unknown>): Record<string, unknown> {
  const { size: _size, changedAt: _changedAt, ...state } = current;
  return state;
}

function listOf(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** In UTC: the message is made once, for every reader (the dashboard shows its tables in the reader's zone, same format). */
function formatWhen(iso: string): string {
  return formatTime(iso, { timeZone: 'UTC' });
}
