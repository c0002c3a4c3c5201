import type pg from 'pg';
import { type CatalogSql, inTransaction } from '../db';
import type { StoredVersion } from '../engine/backup/backup';
import type { BackupDiskEntry, BackupImageManifest } from '../engine/repository/manifests';

/**
 * Indexes one backup image (as written to the repository) in the catalog, in one transaction: the VM, its
 * disks and their common flag, the VMs sharing each disk, the stored disks and the fast-path versions.
 * `catalog rebuild` replays every image through this same function. Plain set-based SQL (about ten
 * statements an image, whatever its number of disks): it is on the path of every backup run.
 */
export async function recordBackupImage(sql: CatalogSql, options: { sourceId: string; image: BackupImageManifest }): Promise<void> {
  await inTransaction(sql, async (client) => {
    // The repository already holds this image durably (fsynced before we are called), and `catalog rebuild`
    // restores any record a crash loses, so the commit need not wait for its own WAL flush.
    await client.query('SET LOCAL synchronous_commit = off');
    await recordIn(client, options.sourceId, options.image);
  });
}

async function recordIn(client: pg.PoolClient, sourceId: string, image: BackupImageManifest): Promise<void> {
  const createdAt = new Date(image.createdAt);
  const disks = image.disks;
  const { rows: [vm] } = await client.query<{ id: string }>(
    `INSERT INTO "Vm" ("id", "sourceId", "name", "uuid", "configPath") VALUES (gen_random_uuid()::text, $1, $2, $3, $4)
     ON CONFLICT ("sourceId", "name") DO UPDATE SET "uuid" = EXCLUDED."uuid", "configPath" = EXCLUDED."configPath"
     RETURNING "id"`,
    [sourceId, image.vm.name, image.vm.uuid, image.vm.configPath],
  );
  await client.query(
    `INSERT INTO "BackupImage" ("id", "vmId", "createdAt", "runId", "logicalBytes", "bytesRead", "bytesWritten", "bytesReferenced")
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [image.id, vm.id, createdAt, image.runId ?? null, image.totals.logicalBytes, image.totals.bytesRead, image.totals.bytesWritten, image.totals.bytesReferenced],
  );
  // This VM's own backup says exactly which disks it uses now.
  await client.query('DELETE FROM "VmDisk" WHERE "vmId" = $1', [vm.id]);
  if (disks.length === 0) return;

  const { rows: diskRows } = await client.query<{ id: string; identifier: string }>(
    `INSERT INTO "Disk" ("id", "sourceId", "identifier", "path", "format", "common")
     SELECT gen_random_uuid()::text, $1, d.identifier, d.path, d.format, d.common
     FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[]) AS d(identifier, path, format, common)
     ON CONFLICT ("sourceId", "identifier") DO UPDATE
       SET "path" = EXCLUDED."path", "format" = EXCLUDED."format", "common" = EXCLUDED."common"
     RETURNING "id", "identifier"`,
    [sourceId, col(disks, (d) => d.identifier), col(disks, (d) => d.path), col(disks, (d) => d.format), col(disks, (d) => d.common)],
  );
  const diskId = new Map(diskRows.map((row) => [row.identifier, row.id]));
  const ids = col(disks, (d) => diskId.get(d.identifier)!);

  // One row per content digest; the entry that stored it carries the bytes it wrote.
  const byDigest = new Map<string, BackupDiskEntry>();
  for (const d of disks) if (!byDigest.has(d.digest) || d.action === 'stored') byDigest.set(d.digest, d);
  const stored = [...byDigest.values()];
  await client.query(
    `INSERT INTO "StoredDisk" ("digest", "format", "logicalBytes", "storedBytes", "createdAt")
     SELECT d.digest, d.format, d.logical, d.stored, $1 FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS d(digest, format, logical, stored)
     ON CONFLICT ("digest") DO UPDATE SET "storedBytes" = CASE WHEN EXCLUDED."storedBytes" > 0 THEN EXCLUDED."storedBytes" ELSE "StoredDisk"."storedBytes" END`,
    [createdAt, col(stored, (d) => d.digest), col(stored, (d) => d.format), col(stored, (d) => d.logicalBytes), col(stored, (d) => (d.action === 'stored' ? d.bytesWritten : 0))],
  );
  // The newest read of a version decides its content and trust (a rebuild may replay images in any order).
  // Images from before fast-path trust was recorded say nothing of it: their versions are read once more.
  await client.query(
    `INSERT INTO "DiskVersion" ("diskId", "versionToken", "digest", "readAt", "racilyClean")
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamp[], $5::boolean[])
     ON CONFLICT ("diskId", "versionToken") DO UPDATE SET
       "digest" = CASE WHEN EXCLUDED."readAt" >= "DiskVersion"."readAt" THEN EXCLUDED."digest" ELSE "DiskVersion"."digest" END,
       "racilyClean" = CASE WHEN EXCLUDED."readAt" >= "DiskVersion"."readAt" THEN EXCLUDED."racilyClean" ELSE "DiskVersion"."racilyClean" END,
       "readAt" = GREATEST(EXCLUDED."readAt", "DiskVersion"."readAt")`,
    [
      ids, col(disks, (d) => d.versionToken), col(disks, (d) => d.digest),
      col(disks, (d) => (d.readAt ? new Date(d.readAt) : createdAt)), col(disks, (d) => d.racilyClean ?? true),
    ],
  );
  await client.query(
    `INSERT INTO "VmDisk" ("vmId", "diskId", "via", "slot")
     SELECT $1, d.disk, d.via, d.slot FROM unnest($2::text[], $3::text[], $4::text[]) AS d(disk, via, slot)
     ON CONFLICT DO NOTHING`,
    [vm.id, ids, col(disks, (d) => d.via), col(disks, (d) => d.slot ?? null)],
  );

  // The other VMs that share a disk, as the source showed them at backup time.
  const shares = disks.flatMap((d) => d.usedBy.filter((name) => name !== image.vm.name).map((name) => ({ name, diskId: diskId.get(d.identifier)! })));
  if (shares.length > 0) {
    await client.query(
      `INSERT INTO "Vm" ("id", "sourceId", "name", "configPath") SELECT gen_random_uuid()::text, $1, n, '' FROM unnest($2::text[]) AS n
       ON CONFLICT ("sourceId", "name") DO NOTHING`,
      [sourceId, [...new Set(shares.map((s) => s.name))]],
    );
    await client.query(
      `INSERT INTO "VmDisk" ("vmId", "diskId", "via")
       SELECT v."id", s.disk, 'shared' FROM unnest($2::text[], $3::text[]) AS s(name, disk) JOIN "Vm" v ON v."sourceId" = $1 AND v."name" = s.name
       ON CONFLICT DO NOTHING`,
      [sourceId, col(shares, (s) => s.name), col(shares, (s) => s.diskId)],
    );
  }

  await client.query(
    `INSERT INTO "DiskReference" ("id", "backupImageId", "diskId", "digest", "via", "slot", "target", "path", "versionToken",
       "parentPointer", "parentPath", "parentVersion", "common", "action", "logicalBytes", "bytesRead", "bytesWritten")
     SELECT gen_random_uuid()::text, $1, d.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
       $9::text[], $10::text[], $11::text[], $12::boolean[], $13::text[], $14::bigint[], $15::bigint[], $16::bigint[]) AS d`,
    [
      image.id, ids, col(disks, (d) => d.digest), col(disks, (d) => d.via), col(disks, (d) => d.slot ?? null),
      col(disks, (d) => d.target ?? null), col(disks, (d) => d.path), col(disks, (d) => d.versionToken),
      col(disks, (d) => d.parent?.pointer ?? null), col(disks, (d) => d.parent?.path ?? null), col(disks, (d) => d.parent?.versionToken ?? null),
      col(disks, (d) => d.common), col(disks, (d) => d.action), col(disks, (d) => d.logicalBytes), col(disks, (d) => d.bytesRead), col(disks, (d) => d.bytesWritten),
    ],
  );
}

function col<T, V>(rows: T[], pick: (row: T) => V): V[] {
  return rows.map(pick);
}

/** The fast path's question, for all disks of a run at once: which (identifier, version) pairs are stored, and
 *  how far can each be trusted (the backup decides: see backupVms)? */
export async function findStoredVersions(sql: CatalogSql, options: { sourceId: string; disks: { identifier: string; versionToken: string }[] }): Promise<(StoredVersion | undefined)[]> {
  if (options.disks.length === 0) return [];
  const { rows } = await sql.query<{ ord: number; digest: string; readAt: Date; racilyClean: boolean }>(
    `SELECT q.ord, v."digest", v."readAt", v."racilyClean"
     FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS q(identifier, version, ord)
     JOIN "Disk" d ON d."sourceId" = $1 AND d."identifier" = q.identifier
     JOIN "DiskVersion" v ON v."diskId" = d."id" AND v."versionToken" = q.version`,
    [options.sourceId, col(options.disks, (d) => d.identifier), col(options.disks, (d) => d.versionToken)],
  );
  const versions: (StoredVersion | undefined)[] = options.disks.map(() => undefined);
  for (const row of rows) versions[Number(row.ord) - 1] = { digest: row.digest, readAt: row.readAt, racilyClean: row.racilyClean };
  return versions;
}
