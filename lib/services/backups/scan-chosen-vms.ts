import { type CatalogSql } from '../../catalog/db';
import { findDiskUsers, findSeenUuids, findSeenVms } from '../../catalog/fleet-rows';
import { type SourceInventory, scanSomeConfigs, vmUuidKey } from '../../engine/sources/inventory';
import type { SourceRow } from '../sources/list-sources';

/**
 * The backup of a few VMs of large sources (`backup --vm`, a VM's "Back up now"): each is read from the config the
 * latest full scan found it in, with its disks, and nothing else of its source is read or recorded. Who else uses
 * its disks comes from that scan. Undefined — scan every source in full — when the catalog cannot vouch for that:
 * a VM not seen by the latest scan of exactly one source (or refused by it: an ambiguous identity is a whole-source
 * question), a config moved or renamed or now carrying another seen VM's UUID, a disk whose identifier the catalog
 * knows at another path or whose path it knows in use under another identifier (so is an ambiguous GUID).
 */
export async function scanChosenVms(sql: CatalogSql, options: { sources: SourceRow[]; vms: string[]; signal?: AbortSignal }): Promise<{ source: SourceRow; inventory: SourceInventory }[] | undefined> {
  const names = [...new Set(options.vms)];
  const seen = await findSeenVms(sql, { sourceIds: options.sources.map((s) => s.id), names });
  if (names.some((name) => seen.filter((vm) => vm.name === name).length !== 1)) return undefined;
  const scanned: { source: SourceRow; inventory: SourceInventory }[] = [];
  for (const source of options.sources) {
    const mine = seen.filter((vm) => vm.sourceId === source.id);
    if (mine.length === 0) continue;
    // No scan memo: for a few VMs, loading and saving the source's memo would cost more than it saves.
    const inventory = await scanSomeConfigs(source, mine.map((vm) => vm.configPath), { signal: options.signal });
    if (!inventory) return undefined;
    const read = inventory.vms.map((vm) => vm.name).sort();
    if (read.join('\0') !== mine.map((vm) => vm.name).sort().join('\0')) return undefined;
    // A config that now carries the UUID of another VM of the source (copied from it): the full scan refuses both.
    const uuidKeys = inventory.vms.map((vm) => vmUuidKey(vm.uuid)).filter(Boolean);
    const sameUuid = await findSeenUuids(sql, { sourceId: source.id, uuidKeys });
    if (sameUuid.some((vm) => !read.includes(vm.name) && uuidKeys.includes(vmUuidKey(vm.uuid)))) return undefined;
    const disks = [...inventory.disks.values()];
    const known = await findDiskUsers(sql, { sourceId: source.id, paths: disks.map((d) => d.path), identifiers: disks.map((d) => d.identifier) });
    const pathOf = new Map(disks.map((d) => [d.identifier, d.path]));
    if (known.some((row) => pathOf.has(row.identifier) && pathOf.get(row.identifier) !== row.path)) return undefined;
    // And the reverse: a disk the latest scan saw in use under another identifier. A wwn/serial two configs give is
    // kept under its path by a full scan (and reported); read alone, the disk would take the GUID.
    const identifierOf = new Map(disks.map((d) => [d.path, d.identifier]));
    if (known.some((row) => row.vm && identifierOf.has(row.path) && identifierOf.get(row.path) !== row.identifier)) return undefined;
    for (const disk of disks) {
      const users = inventory.usedBy.get(disk.path) ?? [];
      const others = known.filter((row) => row.path === disk.path && row.vm && !read.includes(row.vm)).map((row) => row.vm!);
      if (others.length) inventory.usedBy.set(disk.path, [...users, ...[...new Set(others)].sort()]);
    }
    scanned.push({ source, inventory });
  }
  return scanned;
}
