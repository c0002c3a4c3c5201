import { createHash } from 'node:crypto';
import type pg from 'pg';
import { type CatalogSql, inTransaction, retryingDeadlock } from './db';
import type { StoredVersion } from '../engine/backup/backup';
import type { BackupDiskEntry, BackupImageManifest } from '../engine/repository/manifests';
import { forgetDiskSets, setVmDisks, upsertDisks, upsertVms } from './fleet-rows';
import { CATALOG_INDEX_LOCK } from './locks';

/** One backup image to index, with the catalog id of the source it belongs to. */
export type ImageRecord = { sourceId: string; image: BackupImageManifest };
/** A backup image the catalog could not index, and why (one line). */
export type SkippedImage = { id: string; error: string };

/**
 * Indexes one backup image (as written to the repository) in the catalog, in one transaction: the VM, its
 * disks and their common flag, the VMs sharing each disk, the stored disks and the fast-path versions.
 * An image already indexed is left as it is (false): recording is idempotent, so a backup, a reconcile
 * and a rebuild may race to record the same image. Plain set-based SQL (about ten statements, whatever the
 * number of disks): it is on the path of every backup run.
 */
export async function recordBackupImage(sql: CatalogSql, options: ImageRecord, stillInRepository?: (id: string) => Promise<boolean>): Promise<boolean> {
  return retryingDeadlock(() => inTransaction(sql, async (client) => {
    await beginIndexWrite(client);
    // Read before the lock (reconcile): a prune may have removed it meanwhile, under the lock held exclusive.
    if (stillInRepository && !(await stillInRepository(options.image.id))) return false;
    return (await recordImagesIn(client, [options])).length > 0;
  }));
}

/**
 * Indexes many images (reconcile) the way backups do: one transaction each, so that a reconcile running
 * beside backups and scans locks one VM at a time, as they do. An image whose record the database refuses
 * (a manifest with impossible values) is skipped and reported; the others are recorded.
 */
export async function recordBackupImages(sql: CatalogSql, items: ImageRecord[], options: { stillInRepository?: (id: string) => Promise<boolean> } = {}): Promise<{ recorded: string[]; skipped: SkippedImage[] }> {
  const result = { recorded: [] as string[], skipped: [] as SkippedImage[] };
  for (const item of [...items].sort((a, b) => a.image.createdAt.localeCompare(b.image.createdAt) || a.image.id.localeCompare(b.image.id))) {
    try {
      if (await recordBackupImage(sql, item, options.stillInRepository)) result.recorded.push(item.image.id);
    } catch (err) {
      if (!isRefusedData(err)) throw err;
      result.skipped.push({ id: item.image.id, error: `refused by the catalog: ${(err as Error).message}` });
    }
  }
  return result;
}

/**
 * Indexes a run's batch of images in one transaction (a VDI pool's clones: one commit for hundreds of VMs). An image
 * the database refuses is skipped and reported; the others are recorded. Rows are locked in key order (fleet-rows.ts),
 * so concurrent recorders wait for each other; a deadlock with a statement that locks in another order (PostgreSQL
 * picks a victim) is retried (retryingDeadlock).
 */
export async function recordBackupImageBatch(sql: CatalogSql, items: ImageRecord[], options: { wholeBlob?: string } = {}): Promise<{ recorded: string[]; skipped: SkippedImage[] }> {
  return retryingDeadlock(() => inTransaction(sql, async (client) => {
    await beginIndexWrite(client);
    const result = await recordBatchIn(client, items);
    // `wholeBlob`: these images are every image of that blob (a backup's pack): recorded, it need not be reconciled.
    if (options.wholeBlob && result.skipped.length === 0) await client.query('INSERT INTO "RecordedImageBlob" ("id") VALUES ($1) ON CONFLICT DO NOTHING', [options.wholeBlob]);
    return result;
  }));
}

/**
 * Marks the blobs of images/ whose every image (as listed) the catalog holds: reconcile then skips them. Checked and
 * written in one statement under the index lock, so that no prune is between forgetting images and removing them.
 */
export async function markBlobsRecorded(sql: CatalogSql, blobs: { blob: string; images: string[] }[]): Promise<void> {
  const members = blobs.flatMap(({ blob, images }) => images.map((id) => ({ blob, id })));
  if (members.length === 0) return;
  await inTransaction(sql, async (client) => {
    await beginIndexWrite(client);
    await client.query(
      `INSERT INTO "RecordedImageBlob" ("id")
       SELECT m.blob FROM unnest($1::text[], $2::text[]) AS m(blob, id)
       GROUP BY m.blob HAVING bool_and(EXISTS (SELECT 1 FROM "BackupImage" b WHERE b."id" = m.id))
       ON CONFLICT DO NOTHING`,
      [members.map((m) => m.blob), members.map((m) => m.id)],
    );
  });
}

/**
 * The first statement of every transaction that records images: the index lock, shared (catalog rebuild
 * takes it exclusively; see locks.ts). The repository already holds these images durably (fsynced before we
 * are called), and every command reconciles a record a crash loses, so the commit need not wait for its own
 * WAL flush.
 */
export async function beginIndexWrite(client: pg.PoolClient): Promise<void> {
  await client.query("SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock_shared($1)", [CATALOG_INDEX_LOCK]);
}

/** recordImagesIn under a savepoint (a rebuild's batch); when the batch is refused, image by image, skipping those refused. */
export async function recordBatchIn(client: pg.PoolClient, items: ImageRecord[]): Promise<{ recorded: string[]; skipped: SkippedImage[] }> {
  try {
    return { recorded: await underSavepoint(client, () => recordImagesIn(client, items)), skipped: [] };
  } catch (err) {
    if (!isRefusedData(err) || items.length === 0) throw err;
    if (items.length === 1) return { recorded: [], skipped: [{ id: items[0].image.id, error: `refused by the catalog: ${(err as Error).message}` }] };
  }
  const result = { recorded: [] as string[], skipped: [] as SkippedImage[] };
  for (const item of items) {
    const one = await recordBatchIn(client, [item]);
    result.recorded.push(...one.recorded);
    result.skipped.push(...one.skipped);
  }
  return result;
}

async function underSavepoint<T>(client: pg.PoolClient, work: () => Promise<T>): Promise<T> {
  await client.query('SAVEPOINT record_images');
  try {
    const result = await work();
    await client.query('RELEASE SAVEPOINT record_images');
    return result;
  } catch (err) {
    await client.query('ROLLBACK TO SAVEPOINT record_images');
    throw err;
  }
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint): the data is wrong, not the database. */
function isRefusedData(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

/**
 * Indexes images inside the caller's transaction (which holds the index lock); returns the ids recorded now.
 * Any order gives the same catalog: a VM's details and disk list, and its disks' attributes, come from its
 * newest image, so an older image recorded late (a lost record reconciled) adds its history only.
 *
 * An image's disk entries are a DiskSet, written once for every image that names the same entries. A current image
 * that names the set its VM's last image named, and read and stored nothing, changes nothing the last one did not
 * already say (disks, links, versions, stored disks): it costs its BackupImage row. That is a VDI pool's unchanged
 * re-backup, 10,000 VMs a run.
 */
export async function recordImagesIn(client: pg.PoolClient, items: ImageRecord[]): Promise<string[]> {
  if (items.length === 0) return [];
  const ordered = [...items].sort((a, b) => a.image.createdAt.localeCompare(b.image.createdAt) || a.image.id.localeCompare(b.image.id));
  const vmKey = (item: ImageRecord) => `${item.sourceId}\0${item.image.vm.name}`;

  // VMs, created when missing. The no-op update returns existing rows and locks them: recorders of one VM
  // take turns, so "is this its newest image?" below is answered against every image recorded before.
  const newestOfVm = new Map<string, ImageRecord>();
  for (const item of ordered) newestOfVm.set(vmKey(item), item);
  const vms = [...newestOfVm.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, item]) => item);
  const vmRows = await upsertVms(client, vms.map((i) => ({ sourceId: i.sourceId, name: i.image.vm.name, uuid: i.image.vm.uuid, configPath: i.image.vm.configPath })), { onConflict: 'lock' });
  const vmId = new Map(vmRows.map((row) => [`${row.sourceId}\0${row.name}`, row.id]));
  const vmRowOf = new Map(vmRows.map((row) => [row.id, row]));

  // The sets, before the images that name them. A set inserted now gets its entries below, in this transaction,
  // from the first image naming it (recorded now or not): no set is ever without its entries.
  const setOf = new Map<ImageRecord, string | null>(ordered.map((item) => [item, diskSetId(item)]));
  const firstWithSet = new Map<string, ImageRecord>();
  for (const item of ordered) {
    const set = setOf.get(item)!;
    if (set !== null && !firstWithSet.has(set)) firstWithSet.set(set, item);
  }
  const sets = [...firstWithSet.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const { rows: newSetRows } = await client.query<{ id: string }>(
    `INSERT INTO "DiskSet" ("id", "sourceId") SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT ("id") DO NOTHING RETURNING "id"`,
    [col(sets, ([id]) => id), col(sets, ([, item]) => item.sourceId)],
  );
  const newSets = new Set(newSetRows.map((row) => row.id));

  // The images; one already recorded (by a concurrent backup, a reconcile or a rebuild) is left alone.
  const { rows: inserted } = await client.query<{ id: string; superseded: boolean }>(
    `WITH ins AS (
       INSERT INTO "BackupImage" ("id", "vmId", "createdAt", "runId", "logicalBytes", "bytesRead", "bytesWritten", "bytesReferenced", "diskSetId", "consistency")
       SELECT * FROM unnest($1::text[], $2::text[], $3::timestamp(3)[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::text[])
       ON CONFLICT ("id") DO NOTHING
       RETURNING "id", "vmId", "createdAt")
     SELECT ins."id", EXISTS (SELECT 1 FROM "BackupImage" b WHERE b."vmId" = ins."vmId" AND (b."createdAt", b."id") > (ins."createdAt", ins."id")) AS superseded
     FROM ins`,
    [
      col(ordered, (i) => i.image.id), col(ordered, (i) => vmId.get(vmKey(i))!), col(ordered, (i) => i.image.createdAt), col(ordered, (i) => i.image.runId ?? null),
      col(ordered, (i) => i.image.totals.logicalBytes), col(ordered, (i) => i.image.totals.bytesRead), col(ordered, (i) => i.image.totals.bytesWritten), col(ordered, (i) => i.image.totals.bytesReferenced),
      col(ordered, (i) => setOf.get(i)!), col(ordered, (i) => i.image.consistency ?? null),
    ],
  );
  const insertedNow = new Map(inserted.map((row) => [row.id, row]));
  const fresh = ordered.filter((item) => insertedNow.has(item.image.id));
  // The newest image of each VM recorded now, unless a newer one was recorded before: it says what the VM is now.
  const currentOfVm = new Map<string, ImageRecord>();
  for (const item of fresh) currentOfVm.set(vmKey(item), item);
  for (const [key, item] of currentOfVm) if (insertedNow.get(item.image.id)!.superseded) currentOfVm.delete(key);
  const current = new Set(currentOfVm.values());
  const currentVms = [...current];
  // Rows change only where the VM did (an unchanged pool rewrites nothing; the locked rows say what they hold).
  const renamed = currentVms.filter((i) => { const row = vmRowOf.get(vmId.get(vmKey(i))!)!; return row.uuid !== i.image.vm.uuid || row.configPath !== i.image.vm.configPath; });
  if (renamed.length > 0) {
    await client.query(
      `UPDATE "Vm" v SET "uuid" = c.uuid, "configPath" = c.config FROM unnest($1::text[], $2::text[], $3::text[]) AS c(id, uuid, config)
       WHERE v."id" = c.id AND (v."uuid", v."configPath") IS DISTINCT FROM (c.uuid, c.config)`,
      [col(renamed, (i) => vmId.get(vmKey(i))!), col(renamed, (i) => i.image.vm.uuid), col(renamed, (i) => i.image.vm.configPath)],
    );
  }
  const didWork = (item: ImageRecord) => item.image.disks.some(isWork);
  // Unchanged: a current image naming the set its VM's links were last written from, having read nothing, its VM with
  // no share row. Its links, versions and stored disks are as that set left them, and so are its disks' attributes
  // (its run's scan recorded them). Links written from a set are the VM's own, never 'shared' (a share row is made
  // only for a disk the VM has no link to): a share row inserted by another VM's image that read Vm.diskSetId as null
  // while this VM's recorder was setting it (so did not null it) makes the image write its links in full.
  const unchangedImages = new Set(currentVms.filter((item) => {
    const row = vmRowOf.get(vmId.get(vmKey(item))!)!;
    return !didWork(item) && !row.hasShares && (row.diskSetId ?? null) === (setOf.get(item) ?? '');
  }));
  const unchanged = (item: ImageRecord) => unchangedImages.has(item);
  const changedVms = currentVms.filter((item) => !unchanged(item));
  const changedVmIds = col(changedVms, (i) => vmId.get(vmKey(i))!);
  const linksSetBy = (images: ImageRecord[]) => new Map(images.map((i) => [vmId.get(vmKey(i))!, setOf.get(i) ?? '']));
  // The images whose disks are written: the first naming a new set, and those recorded now that say something new.
  const writers = new Set<ImageRecord>([...newSets].map((set) => firstWithSet.get(set)!));
  for (const item of fresh) if ((current.has(item) && !unchanged(item)) || didWork(item)) writers.add(item);

  type Use = { item: ImageRecord; entry: BackupDiskEntry; position: number };
  const uses: Use[] = ordered.filter((item) => writers.has(item)).flatMap((item) => item.image.disks.map((entry, position) => ({ item, entry, position })));
  if (uses.length === 0) {
    await setVmDisks(client, changedVmIds, [], linksSetBy(changedVms));
    return fresh.map((item) => item.image.id);
  }
  const diskKey = (use: Use) => `${use.item.sourceId}\0${use.entry.identifier}`;

  // Disks: a current image sets their path, format and common flag; an older one only creates them when missing.
  const diskOf = new Map<string, Use>();
  for (const use of uses) {
    const known = diskOf.get(diskKey(use));
    if (!known || current.has(use.item) || !current.has(known.item)) diskOf.set(diskKey(use), use);
  }
  const disks = [...diskOf.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, use]) => use);
  const diskId = new Map<string, string>();
  for (const [setsAttributes, group] of [[true, disks.filter((u) => current.has(u.item))], [false, disks.filter((u) => !current.has(u.item))]] as const) {
    if (group.length === 0) continue;
    const rows = await upsertDisks(client, group.map((u) => ({
      sourceId: u.item.sourceId, identifier: u.entry.identifier, path: u.entry.path, format: u.entry.format, common: u.entry.common, parentPath: null, sizeBytes: 0,
    })), { onConflict: setsAttributes ? 'attributes' : 'lock' });
    for (const row of rows) diskId.set(`${row.sourceId}\0${row.identifier}`, row.id);
  }
  // Each use's disk id, looked up once: a batch of a pool's images names the same few disks thousands of times.
  const idOfUse = new Map<Use, string>();
  for (const use of uses) idOfUse.set(use, diskId.get(diskKey(use))!);
  const idOf = (use: Use) => idOfUse.get(use)!;

  // One row per content digest (first seen: oldest); the entry that stored it carries the bytes it wrote.
  const byDigest = new Map<string, { use: Use; storedBytes: number }>();
  for (const use of uses) {
    const known = byDigest.get(use.entry.digest);
    const storedBytes = use.entry.action === 'stored' ? use.entry.bytesWritten : 0;
    if (!known) byDigest.set(use.entry.digest, { use, storedBytes });
    else known.storedBytes = Math.max(known.storedBytes, storedBytes);
  }
  const stored = [...byDigest.values()].sort((a, b) => (a.use.entry.digest < b.use.entry.digest ? -1 : 1));
  await client.query(
    `INSERT INTO "StoredDisk" ("digest", "format", "logicalBytes", "storedBytes", "createdAt")
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamp(3)[])
     ON CONFLICT ("digest") DO UPDATE SET "storedBytes" = EXCLUDED."storedBytes"
     WHERE EXCLUDED."storedBytes" > 0 AND EXCLUDED."storedBytes" <> "StoredDisk"."storedBytes"`,
    [col(stored, (s) => s.use.entry.digest), col(stored, (s) => s.use.entry.format), col(stored, (s) => s.use.entry.logicalBytes), col(stored, (s) => s.storedBytes), col(stored, (s) => s.use.item.image.createdAt)],
  );

  const entries = uses.filter((use) => newSets.has(setOf.get(use.item)!) && firstWithSet.get(setOf.get(use.item)!) === use.item);
  if (entries.length > 0) {
    await client.query(
      `INSERT INTO "DiskSetEntry" ("diskSetId", "position", "diskId", "digest", "via", "slot", "target", "path", "versionToken",
         "parentPointer", "parentPath", "parentVersion", "common", "logicalBytes")
       SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
         $10::text[], $11::text[], $12::text[], $13::boolean[], $14::bigint[])`,
      [
        col(entries, (u) => setOf.get(u.item)!), col(entries, (u) => u.position), col(entries, idOf), col(entries, (u) => u.entry.digest), col(entries, (u) => u.entry.via),
        col(entries, (u) => u.entry.slot ?? null), col(entries, (u) => u.entry.target ?? null), col(entries, (u) => u.entry.path), col(entries, (u) => u.entry.versionToken),
        col(entries, (u) => u.entry.parent?.pointer ?? null), col(entries, (u) => u.entry.parent?.path ?? null), col(entries, (u) => u.entry.parent?.versionToken ?? null),
        col(entries, (u) => u.entry.common), col(entries, (u) => u.entry.logicalBytes),
      ],
    );
  }
  const work = uses.filter((use) => insertedNow.has(use.item.image.id) && isWork(use.entry));
  if (work.length > 0) {
    await client.query(
      `INSERT INTO "ImageDiskWork" ("backupImageId", "position", "action", "bytesRead", "bytesWritten")
       SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::bigint[])`,
      [col(work, (u) => u.item.image.id), col(work, (u) => u.position), col(work, (u) => u.entry.action), col(work, (u) => u.entry.bytesRead), col(work, (u) => u.entry.bytesWritten)],
    );
  }

  // The fast path's versions. The newest read of a version decides its content and trust (a rebuild or a
  // reconcile may record images in any order); images from before fast-path trust was recorded say nothing of
  // it: their versions are read once more.
  // A running domain's disk is filed under its checkpoint's token too (the next backup's baseline): a checkpoint is
  // taken before the point in time, so nothing it names is racily clean.
  type VersionRow = { use: Use; token: string; racilyClean: boolean };
  const versions = new Map<string, VersionRow>();
  for (const use of uses) {
    if (!insertedNow.has(use.item.image.id)) continue;
    versions.set(`${idOf(use)}\0${use.entry.versionToken}`, { use, token: use.entry.versionToken, racilyClean: use.entry.racilyClean ?? true });
    if (use.entry.changeToken) versions.set(`${idOf(use)}\0${use.entry.changeToken}`, { use, token: use.entry.changeToken, racilyClean: false });
  }
  const versionRows = [...versions.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
  if (versionRows.length > 0) {
    await client.query(
      `INSERT INTO "DiskVersion" ("diskId", "versionToken", "digest", "readAt", "racilyClean")
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamp[], $5::boolean[])
       ON CONFLICT ("diskId", "versionToken") DO UPDATE SET
         "digest" = CASE WHEN EXCLUDED."readAt" >= "DiskVersion"."readAt" THEN EXCLUDED."digest" ELSE "DiskVersion"."digest" END,
         "racilyClean" = CASE WHEN EXCLUDED."readAt" >= "DiskVersion"."readAt" THEN EXCLUDED."racilyClean" ELSE "DiskVersion"."racilyClean" END,
         "readAt" = GREATEST(EXCLUDED."readAt", "DiskVersion"."readAt")
       WHERE EXCLUDED."readAt" >= "DiskVersion"."readAt"
         AND (EXCLUDED."digest", EXCLUDED."racilyClean", EXCLUDED."readAt") IS DISTINCT FROM ("DiskVersion"."digest", "DiskVersion"."racilyClean", "DiskVersion"."readAt")`,
      [
        col(versionRows, (r) => idOf(r.use)), col(versionRows, (r) => r.token), col(versionRows, (r) => r.use.entry.digest),
        col(versionRows, (r) => (r.use.entry.readAt ? new Date(r.use.entry.readAt) : new Date(r.use.item.image.createdAt))), col(versionRows, (r) => r.racilyClean),
      ],
    );
  }

  const currentUses = uses.filter((use) => current.has(use.item) && !unchanged(use.item));
  // A VM's own newest backup says exactly which disks it uses now.
  await setVmDisks(client, changedVmIds, currentUses.map((u) => ({ vmId: vmId.get(vmKey(u.item))!, diskId: idOf(u), via: u.entry.via, slot: u.entry.slot ?? null })), linksSetBy(changedVms));
  if (currentUses.length > 0) {
    // The other VMs that share a disk, as the source showed them at backup time.
    // Once per VM and disk: a pool's clones all name the same sharers of its golden image.
    const shareOf = new Map<string, { sourceId: string; name: string; diskId: string }>();
    for (const u of currentUses) {
      const disk = idOf(u);
      for (const name of u.entry.usedBy) {
        if (name === u.item.image.vm.name) continue;
        const key = `${disk}\0${name}`; // a disk id belongs to one source
        if (!shareOf.has(key)) shareOf.set(key, { sourceId: u.item.sourceId, name, diskId: disk });
      }
    }
    const shares = [...shareOf.values()];
    if (shares.length > 0) {
      const named = [...new Map(shares.map((s) => [`${s.sourceId}\0${s.name}`, s])).values()];
      await upsertVms(client, named.map((s) => ({ sourceId: s.sourceId, name: s.name, uuid: '', configPath: '' })), { onConflict: 'skip' });
      const { rows: linked } = await client.query<{ vmId: string }>(
        `INSERT INTO "VmDisk" ("vmId", "diskId", "via")
         SELECT v."id", s.disk, 'shared' FROM unnest($1::text[], $2::text[], $3::text[]) AS s(source, name, disk) JOIN "Vm" v ON v."sourceId" = s.source AND v."name" = s.name
         ON CONFLICT DO NOTHING RETURNING "vmId"`,
        [col(shares, (s) => s.sourceId), col(shares, (s) => s.name), col(shares, (s) => s.diskId)],
      );
      await forgetDiskSets(client, linked.map((row) => row.vmId));
    }
  }
  return fresh.map((item) => item.image.id);
}

/** An entry for which the run did something: stored the disk, or read it. */
function isWork(entry: BackupDiskEntry): boolean {
  return entry.action !== 'referenced' || entry.bytesRead !== 0 || entry.bytesWritten !== 0;
}

/**
 * The id of an image's DiskSet (null: it names no disk): a digest of its source and of its entries as the set keeps
 * them, in order, and of each disk's format (a disk's attributes come from the set of a VM that did not change).
 */
export function diskSetId(item: ImageRecord): string | null {
  if (item.image.disks.length === 0) return null;
  const named = item.image.disks.map((e) => [
    e.identifier, e.path, e.format, e.via, e.slot ?? null, e.target ?? null, e.versionToken, e.digest,
    e.parent?.pointer ?? null, e.parent?.path ?? null, e.parent?.versionToken ?? null, e.common, e.logicalBytes,
  ]);
  return createHash('sha256').update(JSON.stringify([item.sourceId, named])).digest('hex');
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
