/** The catalog's side of verify: which images to verify, and what it found. */
import type { CatalogSql } from './db';
import { inTransaction } from './db';

export type VerifiableImage = { backupId: string; vm: string; source: string };

/** Images of the named VMs (all when none), oldest verification first; `outdatedBefore`: only those not verified since. */
export async function listVerifiableImages(sql: CatalogSql, options: { vms?: string[]; outdatedBefore?: Date }): Promise<VerifiableImage[]> {
  const { rows } = await sql.query<VerifiableImage>(
    `SELECT b."id" AS "backupId", v."name" AS "vm", s."name" AS "source"
       FROM "BackupImage" b JOIN "Vm" v ON v."id" = b."vmId" JOIN "Source" s ON s."id" = v."sourceId"
      WHERE ($1::text[] IS NULL OR v."name" = ANY($1))
        AND ($2::timestamp IS NULL OR b."verifiedAt" IS NULL OR b."verifiedAt" < $2)
      ORDER BY b."verifiedAt" ASC NULLS FIRST, b."id"`,
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
