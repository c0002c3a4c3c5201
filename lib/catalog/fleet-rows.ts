import type pg from 'pg';

/**
 * The fleet's rows — Vm, Disk, VmDisk — written in one place each, for the scan's record (record-inventory.ts) and
 * the backup's (record-backup-image.ts). Set-based: one statement for any number of rows.
 */

/**
 * Rows are written, and so locked, in key order: two transactions writing overlapping sets (a scan and a backup's
 * batch, two backups) wait for each other instead of deadlocking.
 */
function inKeyOrder<T>(rows: T[], key: (row: T) => [string, string]): T[] {
  return rows.map((row) => ({ row, key: key(row).join('\0') })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map(({ row }) => row);
}

export type VmRow = { sourceId: string; name: string; uuid: string; configPath: string };

/**
 * What an upsert does to a row that exists:
 * - `details`: sets uuid and configPath (and lastSeenAt when `seen`): the caller knows what the VM is now;
 * - `lock`: changes nothing but returns and locks the row, so that writers of one VM take turns;
 * - `skip`: leaves it alone and does not return it.
 */
export type VmConflict = 'details' | 'lock' | 'skip';

/**
 * A VM row written or locked. Locked rows (`lock`) say more, for the recorder of backup images: the VM's details,
 * the disk set its links were written from (see setVmDisks) and whether it has share rows.
 */
export type VmRowWritten = { id: string; sourceId: string; name: string; uuid?: string; configPath?: string; diskSetId?: string | null; hasShares?: boolean };

/** Creates missing VMs (seen now when `seen`: a scan found them); returns the rows written or locked. */
export async function upsertVms(
  client: pg.ClientBase,
  rows: VmRow[],
  options: { onConflict: VmConflict; seen?: boolean },
): Promise<VmRowWritten[]> {
  if (rows.length === 0) return [];
  rows = inKeyOrder(rows, (r) => [r.sourceId, r.name]);
  if (options.onConflict === 'lock') return lockVms(client, rows);
  const onConflict = {
    details: `DO UPDATE SET "uuid" = EXCLUDED."uuid", "configPath" = EXCLUDED."configPath", "lastSeenAt" = COALESCE(EXCLUDED."lastSeenAt", "Vm"."lastSeenAt")`,
    lock: 'DO UPDATE SET "name" = EXCLUDED."name"',
    skip: 'DO NOTHING',
  }[options.onConflict];
  const { rows: written } = await client.query<{ id: string; sourceId: string; name: string }>(
    `INSERT INTO "Vm" ("id", "sourceId", "name", "uuid", "configPath", "lastSeenAt")
     SELECT gen_random_uuid()::text, v.source, v.name, v.uuid, v.config, CASE WHEN $5::boolean THEN now() END
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS v(source, name, uuid, config)
     ON CONFLICT ("sourceId", "name") ${onConflict}
     RETURNING "id", "sourceId", "name"`,
    [rows.map((r) => r.sourceId), rows.map((r) => r.name), rows.map((r) => r.uuid), rows.map((r) => r.configPath), Boolean(options.seen)],
  );
  return written;
}

/**
 * `lock`: the VMs that exist are locked with a row lock (no new row version, where the no-op update of
 * `INSERT … ON CONFLICT` wrote one per VM: 10,000 a run for an unchanged pool); then the missing ones are created.
 * Each step in key order (`rows` are in it), not the two together: a deadlock with a writer of both is retried.
 * FOR NO KEY UPDATE, the lock that no-op update took: recorders of one VM take turns, but another batch inserting
 * share rows for the VM (whose foreign key takes a key-share lock) does not wait, where FOR UPDATE made two batches
 * naming each other as sharers deadlock.
 */
/** What a locked VM row says (VmRowWritten), of the row named `vm` in the statement. */
function lockedVmColumns(vm: string): string {
  return `${vm}."id", ${vm}."sourceId", ${vm}."name", ${vm}."uuid", ${vm}."configPath", ${vm}."diskSetId",
    EXISTS (SELECT 1 FROM "VmDisk" vd WHERE vd."vmId" = ${vm}."id" AND vd."via" = 'shared') AS "hasShares"`;
}

async function lockVms(client: pg.ClientBase, rows: VmRow[]): Promise<VmRowWritten[]> {
  const { rows: locked } = await client.query<VmRowWritten>(
    `SELECT ${lockedVmColumns('v')} FROM "Vm" v
     JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(source, name, ord) ON v."sourceId" = w.source AND v."name" = w.name
     ORDER BY w.ord FOR NO KEY UPDATE OF v`,
    [rows.map((r) => r.sourceId), rows.map((r) => r.name)],
  );
  if (locked.length === rows.length) return locked;
  const found = new Set(locked.map((row) => `${row.sourceId}\0${row.name}`));
  // Created meanwhile by another transaction: the upsert waits for it, then locks and returns the row.
  const created = await upsertVmsLocking(client, rows.filter((r) => !found.has(`${r.sourceId}\0${r.name}`)));
  return [...locked, ...created];
}

async function upsertVmsLocking(client: pg.ClientBase, rows: VmRow[]): Promise<VmRowWritten[]> {
  const { rows: written } = await client.query<VmRowWritten>(
    `INSERT INTO "Vm" ("id", "sourceId", "name", "uuid", "configPath")
     SELECT gen_random_uuid()::text, v.source, v.name, v.uuid, v.config FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS v(source, name, uuid, config)
     ON CONFLICT ("sourceId", "name") DO UPDATE SET "name" = EXCLUDED."name"
     RETURNING ${lockedVmColumns('"Vm"')}`,
    [rows.map((r) => r.sourceId), rows.map((r) => r.name), rows.map((r) => r.uuid), rows.map((r) => r.configPath)],
  );
  return written;
}

export type DiskRow = {
  sourceId: string; identifier: string; path: string; format: string; common: boolean;
  /** Known to a scan only (a backup image does not record them): null and 0 when unknown. */
  parentPath: string | null; sizeBytes: number;
};

/**
 * What an upsert does to a disk that exists (keyed by source and identifier):
 * - `attributes`: sets path, format and common (the newest backup image knows them);
 * - `layout`: those and the parent and size too (a scan knows them all);
 * - `lock`: changes nothing but returns and locks the row.
 */
export type DiskConflict = 'attributes' | 'layout' | 'lock';

/** Creates missing disks; returns every row written or locked. */
export async function upsertDisks(
  client: pg.ClientBase,
  rows: DiskRow[],
  options: { onConflict: DiskConflict },
): Promise<{ id: string; sourceId: string; identifier: string; path: string }[]> {
  if (rows.length === 0) return [];
  rows = inKeyOrder(rows, (r) => [r.sourceId, r.identifier]);
  const attributes = '"path" = EXCLUDED."path", "format" = EXCLUDED."format", "common" = EXCLUDED."common"';
  const set = {
    attributes,
    layout: `${attributes}, "parentPath" = EXCLUDED."parentPath", "sizeBytes" = EXCLUDED."sizeBytes"`,
    lock: '"identifier" = EXCLUDED."identifier"',
  }[options.onConflict];
  // A row that would not change is not written (an unchanged pool's 10,000 disks): ON CONFLICT still locks it, and
  // the second statement returns it.
  const changes = {
    attributes: '("Disk"."path", "Disk"."format", "Disk"."common") IS DISTINCT FROM (EXCLUDED."path", EXCLUDED."format", EXCLUDED."common")',
    layout: `("Disk"."path", "Disk"."format", "Disk"."common", "Disk"."parentPath", "Disk"."sizeBytes")
      IS DISTINCT FROM (EXCLUDED."path", EXCLUDED."format", EXCLUDED."common", EXCLUDED."parentPath", EXCLUDED."sizeBytes")`,
    lock: 'true',
  }[options.onConflict];
  const { rows: written } = await client.query<{ id: string; sourceId: string; identifier: string; path: string }>(
    `INSERT INTO "Disk" ("id", "sourceId", "identifier", "path", "format", "common", "parentPath", "sizeBytes")
     SELECT gen_random_uuid()::text, d.source, d.identifier, d.path, d.format, d.common, d.parent, d.size
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::text[], $7::bigint[]) AS d(source, identifier, path, format, common, parent, size)
     ON CONFLICT ("sourceId", "identifier") DO UPDATE SET ${set} WHERE ${changes}
     RETURNING "id", "sourceId", "identifier", "path"`,
    [
      rows.map((r) => r.sourceId), rows.map((r) => r.identifier), rows.map((r) => r.path), rows.map((r) => r.format),
      rows.map((r) => r.common), rows.map((r) => r.parentPath), rows.map((r) => r.sizeBytes),
    ],
  );
  if (written.length === rows.length) return written;
  const returned = new Set(written.map((row) => `${row.sourceId}\0${row.identifier}`));
  const rest = rows.filter((r) => !returned.has(`${r.sourceId}\0${r.identifier}`));
  const { rows: unchanged } = await client.query<{ id: string; sourceId: string; identifier: string; path: string }>(
    `SELECT d."id", d."sourceId", d."identifier", d."path" FROM "Disk" d
     JOIN unnest($1::text[], $2::text[]) AS k(source, identifier) ON d."sourceId" = k.source AND d."identifier" = k.identifier`,
    [rest.map((r) => r.sourceId), rest.map((r) => r.identifier)],
  );
  return [...written, ...unchanged];
}

export type VmDiskLink = { vmId: string; diskId: string; via: string; slot: string | null };

/** Which VM uses which disk (attached, or through a parent chain); a link that exists is kept. */
export async function linkVmDisks(client: pg.ClientBase, links: VmDiskLink[]): Promise<void> {
  if (links.length === 0) return;
  const { rows } = await client.query<{ vmId: string }>(
    `INSERT INTO "VmDisk" ("vmId", "diskId", "via", "slot")
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING RETURNING "vmId"`,
    [links.map((l) => l.vmId), links.map((l) => l.diskId), links.map((l) => l.via), links.map((l) => l.slot)],
  );
  await forgetDiskSets(client, rows.map((row) => row.vmId));
}

/**
 * A VM whose links something changed no longer has them as a disk set says (`Vm.diskSetId`): its next backup image
 * writes them in full. Every writer of VmDisk rows calls this for the VMs whose rows it changed.
 */
export async function forgetDiskSets(client: pg.ClientBase, vmIds: string[]): Promise<void> {
  if (vmIds.length === 0) return;
  await client.query('UPDATE "Vm" SET "diskSetId" = NULL WHERE "id" = ANY($1::text[]) AND "diskSetId" IS NOT NULL', [[...new Set(vmIds)]]);
}

/**
 * The VmDisk rows of these VMs become exactly `links` (their own uses): rows that differ are deleted, missing ones
 * inserted; the same rows are left as they are.
 */
export async function setVmDisks(client: pg.ClientBase, vmIds: string[], links: VmDiskLink[], fromSets?: Map<string, string>): Promise<void> {
  if (vmIds.length === 0) return;
  // The difference is computed here and only it is written: an unchanged pool's backup writes no VmDisk row.
  const { rows: current } = await client.query<VmDiskLink>('SELECT "vmId", "diskId", "via", "slot" FROM "VmDisk" WHERE "vmId" = ANY($1::text[])', [vmIds]);
  const key = (link: { vmId: string; diskId: string }) => `${link.vmId}\0${link.diskId}`;
  const wanted = new Map<string, VmDiskLink[]>();
  for (const link of links) wanted.set(key(link), [...(wanted.get(key(link)) ?? []), link]);
  // A row stays when it is one of the links for its VM and disk (a VM and disk have one row: the first link is kept).
  const stale = new Set(current.filter((row) => !(wanted.get(key(row)) ?? []).some((link) => link.via === row.via && link.slot === row.slot)));
  if (stale.size > 0) {
    await client.query(
      'DELETE FROM "VmDisk" vd USING unnest($1::text[], $2::text[]) AS s(vm, disk) WHERE vd."vmId" = s.vm AND vd."diskId" = s.disk',
      [[...stale].map((row) => row.vmId), [...stale].map((row) => row.diskId)],
    );
    await forgetDiskSets(client, [...stale].map((row) => row.vmId));
  }
  const kept = new Set(current.filter((row) => !stale.has(row)).map(key));
  await linkVmDisks(client, [...wanted.values()].map((same) => same[0]).filter((link) => !kept.has(key(link))));
  // Written from a backup image's disk set (record-backup-image.ts): the VM's next image naming that set need not
  // write them again. `''` for an image that names no disk.
  if (fromSets) {
    const ids = vmIds.filter((id) => fromSets.has(id));
    await client.query(
      `UPDATE "Vm" v SET "diskSetId" = c.set FROM unnest($1::text[], $2::text[]) AS c(id, set) WHERE v."id" = c.id AND v."diskSetId" IS DISTINCT FROM c.set`,
      [ids, ids.map((id) => fromSets.get(id)!)],
    );
  }
}

/**
 * The VMs of these names that the latest scan of their source saw, and found no problem with, with the config it
 * read them from: where a backup of a few VMs reads them again without scanning the whole source. A VM the scan
 * refused (two configs defining it: the catalog's one row names one of them, maybe the copy) is not vouched for.
 */
export async function findSeenVms(client: pg.ClientBase | pg.Pool, options: { sourceIds: string[]; names: string[] }): Promise<{ sourceId: string; name: string; configPath: string }[]> {
  const { rows } = await client.query<{ sourceId: string; name: string; configPath: string }>(
    `SELECT v."sourceId", v."name", v."configPath" FROM "Vm" v JOIN "Source" s ON s."id" = v."sourceId"
     WHERE v."sourceId" = ANY($1::text[]) AND v."name" = ANY($2::text[]) AND s."scannedAt" IS NOT NULL AND v."lastSeenAt" >= s."scannedAt"
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(s."problems") p WHERE p->>'file' = v."configPath")`,
    [options.sourceIds, options.names],
  );
  return rows;
}

/**
 * Which VMs the latest scan of a source saw using these disks (by path), and the disks it knows by these
 * identifiers: what a backup of a few VMs knows of the rest of the source without reading it.
 */
export async function findDiskUsers(client: pg.ClientBase | pg.Pool, options: { sourceId: string; paths: string[]; identifiers: string[] }): Promise<{ path: string; identifier: string; vm: string | null }[]> {
  const { rows } = await client.query<{ path: string; identifier: string; vm: string | null }>(
    `SELECT d."path", d."identifier", v."name" AS vm FROM "Disk" d JOIN "Source" s ON s."id" = d."sourceId"
     LEFT JOIN "VmDisk" vd ON vd."diskId" = d."id"
     LEFT JOIN "Vm" v ON v."id" = vd."vmId" AND v."lastSeenAt" >= s."scannedAt"
     WHERE d."sourceId" = $1 AND (d."path" = ANY($2::text[]) OR d."identifier" = ANY($3::text[]))`,
    [options.sourceId, options.paths, options.identifiers],
  );
  return rows;
}

/**
 * The VMs the latest scan of a source saw whose UUID may be one of these (keys as vmUuidKey makes them; the caller
 * compares exactly): a VM read alone whose config now carries another VM's UUID is an ambiguous identity.
 */
export async function findSeenUuids(client: pg.ClientBase | pg.Pool, options: { sourceId: string; uuidKeys: string[] }): Promise<{ name: string; uuid: string }[]> {
  if (options.uuidKeys.length === 0) return [];
  const { rows } = await client.query<{ name: string; uuid: string }>(
    `SELECT v."name", v."uuid" FROM "Vm" v JOIN "Source" s ON s."id" = v."sourceId"
     WHERE v."sourceId" = $1 AND v."lastSeenAt" >= s."scannedAt" AND v."uuid" <> ''
       AND (lower(replace(v."uuid", '-', '')) = ANY($2::text[]) OR lower(btrim(v."uuid", E' \t\r\n')) = ANY($2::text[]))`,
    [options.sourceId, options.uuidKeys],
  );
  return rows;
}
