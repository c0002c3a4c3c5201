import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../errors';
import type { BackupDiskEntry, BackupImageManifest } from '../repository/manifests';
import { type SourceInventory, type VirtualDisk, type VmInventory, inspectDisk, isInside } from '../sources/inventory';

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
  /** Other VMs that use the disk now (live), and that used it at backup time (catalog). */
  sharedWith: string[];
  sharedAtBackup: string[];
};

export type DiskAction = 'restored' | 'skipped-common' | 'reattached' | 'copied' | 'overwritten';

export type PlannedDisk = {
  entry: BackupDiskEntry;
  common: boolean;
  action: DiskAction;
  /** Where the backed-up copy is written (restored, copied, overwritten); absent when nothing is written. */
  destination?: string;
  /** The file the restored VM (or child disk) will point at. */
  pointTo: string;
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
  /** Changes whenever anything the user confirmed would change: drift found, actions, destinations. */
  fingerprint: string;
  /** Set when the plan, with the chosen options, cannot be carried out (reattaching a disk that is gone). */
  cannotExecute?: string;
};

export type PlanOptions = {
  image: BackupImageManifest;
  live: SourceInventory;
  target: RestoreTarget;
  policy?: RestorePolicy;
  choice?: RestoreChoice;
};

/** Plans a restore: reads the backup image and the live source, writes nothing. */
export async function planRestore(options: PlanOptions): Promise<RestorePlan> {
  const { image, live, target } = options;
  const policy = options.policy ?? 'no-overwrite';
  const choice = options.choice ?? 'reattach';
  const root = live.root;
  if (target.kind === 'folder' && isInside(root, path.resolve(target.dir))) {
    throw new InputError(`target folder lies inside the source ${root}; restore to a folder outside it, or use --in-place`, { file: target.dir });
  }
  // The VM as it is now; its config is read even when one of its disks is broken or gone.
  const liveVm = live.vms.find((vm) => vm.name === image.vm.name);
  const drift: Drift[] = [];
  const commonPaths = new Set<string>();

  const othersUsing = (diskPath: string) => usersNow(live, diskPath).filter((name) => name !== image.vm.name);
  const isCommon = (entry: BackupDiskEntry) => entry.common || othersUsing(entry.path).length > 0;
  for (const entry of image.disks) if (isCommon(entry)) commonPaths.add(entry.path);

  for (const entry of image.disks) {
    const common = commonPaths.has(entry.path);
    const parentCommon = entry.parent !== undefined && commonPaths.has(entry.parent.path);
    if (!common && !parentCommon) continue;
    const shared = { sharedWith: othersUsing(entry.path), sharedAtBackup: entry.usedBy.filter((name) => name !== image.vm.name) };
    const at = (kind: DriftKind, recorded: Record<string, unknown>, current: Record<string, unknown>) => drift.push({ disk: entry.path, kind, recorded, current, ...shared });

    if (common && entry.via === 'attached' && entry.slot) {
      const livePath = await slotTargetNow(liveVm, entry.slot);
      if (livePath === undefined) at('retargeted', { slot: entry.slot, path: entry.path }, { slot: entry.slot, path: null });
      else if (livePath !== entry.path) at('retargeted', { slot: entry.slot, path: entry.path }, { slot: entry.slot, path: livePath });
    }
    let now: VirtualDisk | undefined;
    try {
      now = live.disks.get(entry.path) ?? (await inspectDisk(root, entry.path, entry.format))?.disk;
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      if (common) at('modified', { version: entry.versionToken }, { error: err.message });
      continue;
    }
    if (!now) {
      if (common) at('missing', { path: entry.path, version: entry.versionToken }, { path: null });
      continue;
    }
    if (common && now.versionToken !== entry.versionToken) at('modified', { version: entry.versionToken }, { version: now.versionToken });
    if (entry.parent) {
      if (now.parent?.path !== entry.parent.path) {
        at('parent-changed', { parent: entry.parent.path, pointer: entry.parent.pointer }, { parent: now.parent?.path ?? null, pointer: now.parent?.pointer ?? null });
      } else if (now.vmdk) {
        const parentNow = live.disks.get(now.parent.path) ?? (await inspectDisk(root, now.parent.path).catch(() => undefined))?.disk;
        if (parentNow?.vmdk && parentNow.vmdk.cid !== now.vmdk.parentCid) {
          at('parent-changed', { parentCid: now.vmdk.parentCid }, { parentCid: now.vmdk.parentCid, parentsCid: parentNow.vmdk.cid });
        }
      }
    }
  }

  const drifted = new Set(drift.map((d) => d.disk));
  const gone = policy === 'no-overwrite' && choice === 'reattach'
    ? drift.find((d) => d.kind === 'missing' || (d.kind === 'retargeted' && d.current.path === null))
    : undefined;
  const cannotExecute = gone
    ? `the shared disk ${path.basename(gone.disk)} ${gone.kind === 'missing' ? 'is missing' : 'is no longer attached to the VM'}: it cannot be reattached; use --choice copy to restore the backed-up version beside the VM`
    : undefined;

  const copyDir = target.kind === 'folder' ? target.dir : path.join(path.dirname(image.vm.configPath), `restored-${image.id}`);
  const inFolder = (entry: BackupDiskEntry, dir: string) => path.join(dir, entry.relativePath);
  // A disk written somewhere is pointed at there; one not written is pointed at where it lives now.
  const writeTo = (entry: BackupDiskEntry, common: boolean, action: DiskAction, destination: string): PlannedDisk => ({ entry, common, action, destination, pointTo: destination });
  const disks: PlannedDisk[] = image.disks.map((entry) => {
    const common = commonPaths.has(entry.path);
    if (!common) return writeTo(entry, common, 'restored', target.kind === 'folder' ? inFolder(entry, target.dir) : entry.path);
    if (policy === 'overwrite') {
      return target.kind === 'folder' ? writeTo(entry, common, 'restored', inFolder(entry, target.dir)) : writeTo(entry, common, 'overwritten', entry.path);
    }
    if (!drifted.has(entry.path)) return { entry, common, action: 'skipped-common', pointTo: entry.path };
    if (choice === 'copy') return writeTo(entry, common, 'copied', inFolder(entry, copyDir));
    const retarget = drift.find((d) => d.disk === entry.path && d.kind === 'retargeted');
    return { entry, common, action: 'reattached', pointTo: (retarget?.current.path as string | undefined) ?? entry.path };
  });

  const overwritesCommon = disks.some((d) => d.action === 'overwritten');
  const status = drift.length > 0 || overwritesCommon ? 'needs-confirmation' : 'planned';
  const configDestination = target.kind === 'folder' ? path.join(target.dir, path.relative(root, image.vm.configPath)) : image.vm.configPath;
  const plan: RestorePlan = {
    vm: image.vm.name, backupId: image.id, backupCreatedAt: image.createdAt, policy, choice, target, status,
    message: '', drift, disks, configDestination, fingerprint: '', cannotExecute,
  };
  plan.message = describePlan(plan);
  plan.fingerprint = createHash('sha256')
    .update(JSON.stringify({ drift: drift.map((d) => [d.kind, d.disk, d.current, d.sharedWith]), disks: disks.map((d) => [d.entry.path, d.action, d.destination, d.pointTo]) }))
    .digest('hex');
  return plan;
}

/** VMs whose config points at a disk now, directly or through a parent chain; also when the disk is gone. */
function usersNow(live: SourceInventory, diskPath: string): string[] {
  const users = new Set(live.usedBy.get(diskPath) ?? []);
  for (const vm of live.vms) if (vm.slots.some((slot) => slot.backedUp && slot.path === diskPath)) users.add(vm.name);
  return [...users];
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
export function describePlan(plan: RestorePlan): string {
  const when = formatWhen(plan.backupCreatedAt);
  const sentences: string[] = [];
  for (const d of plan.drift) {
    const name = path.basename(d.disk);
    const users = d.sharedWith.length ? d.sharedWith : d.sharedAtBackup;
    const usedBy = users.length ? ` (used by ${listOf(users)})` : '';
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
    const affected = [...new Set(overwritten.flatMap((d) => d.entry.usedBy).filter((name) => name !== plan.vm))];
    sentences.push(`Policy overwrite writes the shared disk${overwritten.length > 1 ? 's' : ''} ${listOf(overwritten.map((d) => path.basename(d.entry.path)))} in place${affected.length ? `: ${listOf(affected)} use${affected.length === 1 ? 's' : ''} ${overwritten.length > 1 ? 'them' : 'it'} and will see the backed-up version` : ''}. Confirm to proceed.`);
  } else if (plan.drift.length) {
    const cannotReattach = plan.drift.some((d) => d.kind === 'missing' || (d.kind === 'retargeted' && d.current.path === null));
    sentences.push(cannotReattach
      ? `Policy no-overwrite keeps shared disks as they are. Choose copy to restore the backed-up version beside the VM and the ${other}.`
      : `Policy no-overwrite keeps shared disks as they are. Confirm to restore the ${other} and attach the current shared disk, or choose copy to restore the backed-up version beside the VM.`);
  } else {
    const kept = plan.disks.filter((d) => d.action === 'skipped-common').map((d) => path.basename(d.entry.path));
    sentences.push(`No drift since the backup of ${when}: ${written} disk${written === 1 ? '' : 's'} will be restored${kept.length ? `; the shared disk${kept.length > 1 ? 's' : ''} ${listOf(kept)} stay${kept.length > 1 ? '' : 's'} as ${kept.length > 1 ? 'they are' : 'it is'} and the VM points at ${kept.length > 1 ? 'them' : 'it'}` : ''}.`);
  }
  return sentences.join(' ');
}

function listOf(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

function formatWhen(iso: string): string {
  const date = new Date(iso);
  const month = date.toLocaleString('en-GB', { month: 'short', timeZone: 'UTC' });
  return `${date.getUTCDate()} ${month} ${String(date.getUTCHours()).padStart(2, '0')}:${String(date.getUTCMinutes()).padStart(2, '0')} UTC`;
}
