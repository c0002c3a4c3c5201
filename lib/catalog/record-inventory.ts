import { createHash } from 'node:crypto';
import type { CatalogSql } from '../db';
import { inTransaction } from '../db';
import type { SourceInventory } from '../engine/sources/inventory';
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
  const { rowCount } = await sql.query(
    `WITH source AS (UPDATE "Source" SET "scannedAt" = now() WHERE "id" = $1 AND "inventoryDigest" = $2 RETURNING "id")
     UPDATE "Vm" SET "lastSeenAt" = now() WHERE "sourceId" IN (SELECT "id" FROM source) AND "name" = ANY($3::text[])`,
    [sourceId, digest, vms.map((vm) => vm.name)],
  );
  if (rowCount === vms.length && rowCount > 0) return { vms: inventory.vms.length, disks: disks.length, problems };
  await inTransaction(sql, async (client) => {
    // Shared with backups' records, exclusive for a rebuild (locks.ts): never a scan half into a rebuilt index.
    await client.query('SELECT pg_advisory_xact_lock_shared($1)', [CATALOG_INDEX_LOCK]);
    const { rows: vmRows } = await client.query<{ id: string; name: string }>(
      `INSERT INTO "Vm" ("id", "sourceId", "name", "uuid", "configPath", "lastSeenAt")
       SELECT gen_random_uuid()::text, $1, v.name, v.uuid, v.config, now() FROM unnest($2::text[], $3::text[], $4::text[]) AS v(name, uuid, config)
       ON CONFLICT ("sourceId", "name") DO UPDATE SET "uuid" = EXCLUDED."uuid", "configPath" = EXCLUDED."configPath", "lastSeenAt" = now()
       RETURNING "id", "name"`,
      [sourceId, vms.map((vm) => vm.name), vms.map((vm) => vm.uuid), vms.map((vm) => vm.configPath)],
    );
    const { rows: diskRows } = await client.query<{ id: string; path: string }>(
      `INSERT INTO "Disk" ("id", "sourceId", "identifier", "path", "format", "common", "parentPath", "sizeBytes")
       SELECT gen_random_uuid()::text, $1, d.identifier, d.path, d.format, d.common, d.parent, d.size
       FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::bigint[]) AS d(identifier, path, format, common, parent, size)
       ON CONFLICT ("sourceId", "identifier") DO UPDATE
         SET "path" = EXCLUDED."path", "format" = EXCLUDED."format", "common" = EXCLUDED."common",
             "parentPath" = EXCLUDED."parentPath", "sizeBytes" = EXCLUDED."sizeBytes"
       RETURNING "id", "path"`,
      [
        sourceId, disks.map((d) => d.identifier), disks.map((d) => d.path), disks.map((d) => d.format),
        disks.map((d) => (inventory.usedBy.get(d.path)?.length ?? 0) > 1), disks.map((d) => d.parent?.path ?? null), disks.map((d) => d.logicalBytes),
      ],
    );
    await client.query(
      `UPDATE "Disk" SET "common" = false WHERE "sourceId" = $1 AND "common" AND NOT ("identifier" = ANY($2::text[]))`,
      [sourceId, disks.map((d) => d.identifier)],
    );
    const vmId = new Map(vmRows.map((row) => [row.name, row.id]));
    const diskId = new Map(diskRows.map((row) => [row.path, row.id]));
    const links = vms.flatMap((vm) => vm.disks.filter((use) => diskId.has(use.diskPath)).map((use) => ({ vm: vmId.get(vm.name)!, disk: diskId.get(use.diskPath)!, via: use.via, slot: use.slot ?? null })));
    await client.query('DELETE FROM "VmDisk" WHERE "vmId" = ANY($1::text[])', [[...vmId.values()]]);
    await client.query(
      `INSERT INTO "VmDisk" ("vmId", "diskId", "via", "slot")
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING`,
      [links.map((l) => l.vm), links.map((l) => l.disk), links.map((l) => l.via), links.map((l) => l.slot)],
    );
    await client.query('UPDATE "Source" SET "scannedAt" = now(), "problems" = $2, "inventoryDigest" = $3 WHERE "id" = $1', [sourceId, JSON.stringify(problems), digest]);
  });
  return { vms: inventory.vms.length, disks: disks.length, problems };
}

/** Scan warnings read "<file>: <message>"; the file is kept apart for the problems list. */
function splitProblem(warning: string, root: string): SourceProblem {
  const match = /^(\/[^:]+): (.*)$/.exec(warning);
  return match ? { file: match[1], message: match[2] } : { file: root, message: warning };
}
