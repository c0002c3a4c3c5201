import { createHash } from 'node:crypto';
import type { CatalogSql } from './db';
import { inTransaction, retryingDeadlock } from './db';
import type { SourceInventory } from '../engine/sources/inventory';
import { setVmDisks, upsertDisks, upsertVms } from './fleet-rows';
import { CATALOG_INDEX_LOCK } from './locks';

export type SourceProblem = { file: string; message: string };

/**
 * Records what a scan found in a source: its VMs (seen now), its disks with their parent links and common
 * flag, which VM uses which disk (attached or through a parent chain), and the problems per file. Disks the
 * scan no longer finds stop being common. Set-based SQL, one transaction.
 */
export async function recordInventory(sql: CatalogSql, options: { sourceId: string; inventory: SourceInventory }): Promise<{ vms: number; disks: number; problems: SourceProblem[] }> {
  const { sourceId, inventory } = options;
  const problems: SourceProblem[] = [
    ...inventory.warnings.map((warning) => splitProblem(warning, inventory.root)),
    ...inventory.problems.map((problem) => splitProblem(problem.message, inventory.root)),
    ...inventory.vms.filter((vm) => vm.error).map((vm) => ({ file: vm.configPath, message: vm.error! })),
  ];
  // A VM row per name (the catalog's key): where configs share a name (each refused, each in `problems`), the
  // one without an error is recorded, else the first.
  const byName = new Map<string, SourceInventory['vms'][number]>();
  for (const vm of inventory.vms) if (!byName.has(vm.name) || (byName.get(vm.name)!.error && !vm.error)) byName.set(vm.name, vm);
  const vms = [...byName.values()];
  const disks = [...inventory.disks.values()];
  // Most scans (every unchanged backup) find what the last one found: then only the times move.
  const digest = createHash('sha256').update(JSON.stringify({
    problems,
    vms: inventory.vms.map((vm) => [vm.name, vm.uuid, vm.configPath, vm.disks.map((use) => [use.diskPath, use.via, use.slot])]),
    disks: disks.map((d) => [d.identifier, d.path, d.format, d.parent?.path, d.logicalBytes, inventory.usedBy.get(d.path)?.length ?? 0]),
  })).digest('hex');
  // Either statement may be a deadlock's victim beside a backup recording images (retryingDeadlock): both may run again.
  const { rowCount } = await retryingDeadlock(() => sql.query(
    `WITH source AS (UPDATE "Source" SET "scannedAt" = now() WHERE "id" = $1 AND "inventoryDigest" = $2 RETURNING "id")
     UPDATE "Vm" SET "lastSeenAt" = now() WHERE "sourceId" IN (SELECT "id" FROM source) AND "name" = ANY($3::text[])`,
    [sourceId, digest, vms.map((vm) => vm.name)],
  ));
  if (rowCount === vms.length && rowCount > 0) return { vms: inventory.vms.length, disks: disks.length, problems };
  await retryingDeadlock(() => inTransaction(sql, async (client) => {
    // Shared with backups' records, exclusive for a rebuild (locks.ts): never a scan half into a rebuilt index.
    await client.query('SELECT pg_advisory_xact_lock_shared($1)', [CATALOG_INDEX_LOCK]);
    const vmRows = await upsertVms(client, vms.map((vm) => ({ sourceId, name: vm.name, uuid: vm.uuid, configPath: vm.configPath })), { onConflict: 'details', seen: true });
    const diskRows = await upsertDisks(client, disks.map((d) => ({
      sourceId, identifier: d.identifier, path: d.path, format: d.format, common: (inventory.usedBy.get(d.path)?.length ?? 0) > 1,
      parentPath: d.parent?.path ?? null, sizeBytes: d.logicalBytes,
    })), { onConflict: 'layout' });
    await client.query(
      `UPDATE "Disk" SET "common" = false WHERE "sourceId" = $1 AND "common" AND NOT ("identifier" = ANY($2::text[]))`,
      [sourceId, disks.map((d) => d.identifier)],
    );
    const vmId = new Map(vmRows.map((row) => [row.name, row.id]));
    const diskId = new Map(diskRows.map((row) => [row.path, row.id]));
    const links = vms.flatMap((vm) => vm.disks.filter((use) => diskId.has(use.diskPath)).map((use) => ({ vmId: vmId.get(vm.name)!, diskId: diskId.get(use.diskPath)!, via: use.via, slot: use.slot ?? null })));
    await setVmDisks(client, [...vmId.values()], links);
    await client.query('UPDATE "Source" SET "scannedAt" = now(), "problems" = $2, "inventoryDigest" = $3 WHERE "id" = $1', [sourceId, JSON.stringify(problems), digest]);
  }));
  return { vms: inventory.vms.length, disks: disks.length, problems };
}

/** Scan warnings read "<file>: <message>"; the file is kept apart for the problems list. */
function splitProblem(warning: string, root: string): SourceProblem {
  const match = /^(\/[^:]+): (.*)$/.exec(warning);
  return match ? { file: match[1], message: match[2] } : { file: root, message: warning };
}
