/** The catalog's side of verify: which images to verify, and what it found. */
import type { CatalogSql } from './db';
import { inTransaction } from './db';

/** due: since when the image waits for a verification (its last one, or its making when never verified). */
export type VerifiableImage = { backupId: string; vm: string; source: string; due: Date };

/**
 * Images of the named VMs (all when none), those waiting longest first (a budgeted run reads them first: coverage);
 * `outdatedBefore`: only those not verified since.
 */
export async function listVerifiableImages(sql: CatalogSql, options: { vms?: string[]; outdatedBefore?: Date }): Promise<VerifiableImage[]> {
  const { rows } = await sql.query<VerifiableImage>(
    `SELECT b."id" AS "backupId", v."name" AS "vm", s."name" AS "source", coalesce(b."verifiedAt", b."createdAt") AS "due"
       FROM "BackupImage" b JOIN "Vm" v ON v."id" = b."vmId" JOIN "Source" s ON s."id" = v."sourceId"
      WHERE ($1::text[] IS NULL OR v."name" = ANY($1))
        AND ($2::timestamp IS NULL OR b."verifiedAt" IS NULL OR b."verifiedAt" < $2)
      ORDER BY coalesce(b."verifiedAt", b."createdAt") ASC, b."id"`,
    [options.vms?.length ? options.vms : null, options.outdatedBefore ?? null],
  );
  return rows;
}

/**
 * Records each image's result, and forgets the fast-path versions of damaged stored disks: the next backup of such a
 * disk reads it, and stores again what was lost (which heals every image naming it).
 */
export async function recordVerifyResults(sql: CatalogSql, results: { backupId: string; status: 'ok' | 'failed'; problems: string[] }[], damagedDisks: string[], at: Date): Promise<void> {
  await inTransaction(sql, async (client) => {
    await client.query(
      `UPDATE "BackupImage" b SET "verifiedAt" = $4, "verifyStatus" = r.status, "verifyProblems" = r.problems::jsonb
         FROM unnest($1::text[], $2::text[], $3::text[]) AS r(id, status, problems) WHERE b."id" = r.id`,
      [results.map((r) => r.backupId), results.map((r) => r.status), results.map((r) => JSON.stringify(r.problems)), at],
    );
    if (damagedDisks.length) await client.query('DELETE FROM "DiskVersion" WHERE "digest" = ANY($1)', [damagedDisks]);
  });
}

/** A stored disk found damaged: the fast path forgets its versions and no backup reuses the damaged keys, at once. */
export async function recordDamage(sql: CatalogSql, digest: string, keys: string[]): Promise<void> {
  await inTransaction(sql, async (client) => {
    await client.query('DELETE FROM "DiskVersion" WHERE "digest" = $1', [digest]);
    if (keys.length) await client.query('INSERT INTO "DamagedBlob" ("key") SELECT unnest($1::text[]) ON CONFLICT DO NOTHING', [keys]);
  });
}

/** Whether the catalog knows a VM of that name. */
export async function vmExists(sql: CatalogSql, name: string): Promise<boolean> {
  const { rows } = await sql.query('SELECT 1 FROM "Vm" WHERE "name" = $1 LIMIT 1', [name]);
  return rows.length > 0;
}

export type DrillCandidate = { backupId: string; vm: string; source: string };

/** Each VM's newest backup image, the VMs whose newest was drilled longest ago (or never) first. */
export async function listDrillCandidates(sql: CatalogSql, options: { vms?: string[] }): Promise<DrillCandidate[]> {
  const { rows } = await sql.query<DrillCandidate & { drilledAt: Date | null }>(
    `SELECT DISTINCT ON (v."id") b."id" AS "backupId", v."name" AS "vm", s."name" AS "source", b."drilledAt"
       FROM "BackupImage" b JOIN "Vm" v ON v."id" = b."vmId" JOIN "Source" s ON s."id" = v."sourceId"
      WHERE ($1::text[] IS NULL OR v."name" = ANY($1))
      ORDER BY v."id", b."createdAt" DESC, b."id" DESC`,
    [options.vms?.length ? options.vms : null],
  );
  return rows
    .sort((a, b) => Number(a.drilledAt ?? 0) - Number(b.drilledAt ?? 0) || a.source.localeCompare(b.source) || a.vm.localeCompare(b.vm))
    .map(({ backupId, vm, source }) => ({ backupId, vm, source }));
}

/** Records each drill's result on the image it restored. */
export async function recordDrillResults(sql: CatalogSql, results: { backupId: string; status: 'ok' | 'failed'; problems: string[] }[], at: Date): Promise<void> {
  if (results.length === 0) return;
  await sql.query(
    `UPDATE "BackupImage" b SET "drilledAt" = $4, "drillStatus" = r.status, "drillProblems" = r.problems::jsonb
       FROM unnest($1::text[], $2::text[], $3::text[]) AS r(id, status, problems) WHERE b."id" = r.id`,
    [results.map((r) => r.backupId), results.map((r) => r.status), results.map((r) => JSON.stringify(r.problems)), at],
  );
}
