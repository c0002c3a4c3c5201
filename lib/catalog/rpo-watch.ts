/** The RPO watch's queries: each VM's newest good backup, and which RPO alerts were already raised. */
import type { CatalogSql } from './db';

export type VmNewestGood = { vmId: string; source: string; vm: string; newestGood: Date | null };

/**
 * Every VM a scan still sees (with `unseenToo`, every VM the catalog knows), with the time of its newest backup that
 * verify did not find damaged: its last good backup.
 */
export async function newestGoodBackups(sql: CatalogSql, options: { unseenToo?: boolean } = {}): Promise<VmNewestGood[]> {
  const { rows } = await sql.query<VmNewestGood>(
    `SELECT v."id" AS "vmId", s."name" AS "source", v."name" AS "vm",
            (SELECT max(b."createdAt") FROM "BackupImage" b WHERE b."vmId" = v."id" AND b."verifyStatus" IS DISTINCT FROM 'failed') AS "newestGood"
       FROM "Vm" v JOIN "Source" s ON s."id" = v."sourceId" WHERE $1::boolean OR v."lastSeenAt" IS NOT NULL`,
    [options.unseenToo ?? false],
  );
  return rows;
}

/**
 * Makes the raised keys under `prefix` exactly `keys`: forgets those that cleared, records the others; returns the
 * keys newly raised (to be told now).
 */
export async function syncRaised(sql: CatalogSql, prefix: string, keys: string[]): Promise<string[]> {
  await sql.query(`DELETE FROM "AlertRaised" WHERE starts_with("key", $1) AND NOT ("key" = ANY($2))`, [prefix, keys]);
  if (keys.length === 0) return [];
  const { rows } = await sql.query<{ key: string }>('INSERT INTO "AlertRaised" ("key") SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING "key"', [keys]);
  return rows.map((row) => row.key);
}
