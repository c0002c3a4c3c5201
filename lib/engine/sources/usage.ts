import { InputError } from '../errors';
import type { DiskSlot } from './types';
import type { DiskResolver } from './virtual-disk';

export type VmDiskUse = {
  diskPath: string;
  via: 'attached' | 'parent';
  /** For attached disks: the config slot and the path as the config writes it. */
  slot?: string;
  target?: string;
};

/**
 * The disks one VM uses: each attached disk, then the parents of its chain once each. One file in two places of
 * one VM (two slots, or a slot and a parent chain) is refused.
 */
export async function vmDiskUses(slots: DiskSlot[], configPath: string, resolver: DiskResolver): Promise<VmDiskUse[]> {
  const disks: VmDiskUse[] = [];
  // canonical path → the slot it is attached in, or the slot whose parent chain holds it
  const attachedIn = new Map<string, string>();
  const parentIn = new Map<string, string>();
  for (const slot of slots) {
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
  return disks;
}

/** disk path → names of the VMs (without errors) that use it, directly or through a parent chain. */
export function usedByVms(vms: readonly { name: string; error?: string; disks: readonly VmDiskUse[] }[]): Map<string, string[]> {
  // Sets while counting: a base or config disk shared by 10,000 VMs must not cost 10,000² comparisons.
  const users = new Map<string, Set<string>>();
  for (const vm of vms) {
    if (vm.error) continue;
    for (const use of vm.disks) {
      let names = users.get(use.diskPath);
      if (!names) users.set(use.diskPath, (names = new Set()));
      names.add(vm.name);
    }
  }
  return new Map([...users].map(([diskPath, names]) => [diskPath, [...names]]));
}
