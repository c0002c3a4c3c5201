import type { CatalogSql } from '../../catalog/db';

export type DiskSavings = { path: string; identifier: string; source: string; vms: string[]; copiesAvoided: number; bytesSaved: number; storedBytes: number };
export type VmSavings = { vm: string; source: string; backups: number; copiesAvoided: number; bytesSaved: number };
export type RunSavings = { runId: string; at: string; vms: number; logicalBytes: number; bytesRead: number; bytesWritten: number; copiesAvoided: number; bytesSaved: number };
export type Savings = { totalSaved: number; copiesAvoided: number; byCommonDisk: DiskSavings[]; byVm: VmSavings[]; byRun: RunSavings[] };

/**
 * What sharing saved: every reference to a common disk that was not stored again (a copy avoided) saves
 * that disk's logical bytes. The total is the CLI's `stats` savedByCommonDisks, by the same rule.
 */
export async function getSavings(sql: CatalogSql): Promise<Savings> {
  const saved = `r."common" AND r."action" = 'referenced'`;
  const [disks, vms, runs] = await Promise.all([
    sql.query<{ path: string; identifier: string; source: string; vms: string[]; copies: string; saved: string; stored: string }>(
      `SELECT d."path", d."identifier", s."name" AS source,
         ARRAY(SELECT DISTINCT v."name" FROM "VmDisk" vd JOIN "Vm" v ON v."id" = vd."vmId" WHERE vd."diskId" = d."id" ORDER BY 1) AS vms,
         count(*) FILTER (WHERE ${saved}) AS copies, coalesce(sum(r."logicalBytes") FILTER (WHERE ${saved}), 0) AS saved,
         (SELECT coalesce(sum(sd."storedBytes"), 0) FROM "StoredDisk" sd WHERE sd."digest" IN (SELECT r2."digest" FROM "DiskReference" r2 WHERE r2."diskId" = d."id")) AS stored
       FROM "DiskReference" r JOIN "Disk" d ON d."id" = r."diskId" JOIN "Source" s ON s."id" = d."sourceId"
       GROUP BY d."id", s."name" HAVING bool_or(r."common") ORDER BY saved DESC, d."path"`,
    ),
    sql.query<{ vm: string; source: string; backups: string; copies: string; saved: string }>(
      `SELECT v."name" AS vm, s."name" AS source, count(DISTINCT b."id") AS backups,
         count(r."position") FILTER (WHERE ${saved}) AS copies, coalesce(sum(r."logicalBytes") FILTER (WHERE ${saved}), 0) AS saved
       FROM "Vm" v JOIN "Source" s ON s."id" = v."sourceId" JOIN "BackupImage" b ON b."vmId" = v."id" LEFT JOIN "DiskReference" r ON r."backupImageId" = b."id"
       GROUP BY v."id", s."name" ORDER BY saved DESC, v."name"`,
    ),
    sql.query<{ run: string; at: Date; vms: string; logical: string; read: string; written: string; copies: string; saved: string }>(
      `WITH img AS (SELECT coalesce("runId", "id") AS run, * FROM "BackupImage"),
       runs AS (SELECT run, min("createdAt") AS at, count(DISTINCT "vmId") AS vms, sum("logicalBytes") AS logical,
                  sum("bytesRead") AS read, sum("bytesWritten") AS written FROM img GROUP BY run),
       refs AS (SELECT img.run, count(*) AS copies, sum(r."logicalBytes") AS saved
                  FROM img JOIN "DiskReference" r ON r."backupImageId" = img."id" WHERE ${saved} GROUP BY img.run)
       SELECT runs.*, coalesce(refs.copies, 0) AS copies, coalesce(refs.saved, 0) AS saved
       FROM runs LEFT JOIN refs USING (run) ORDER BY at DESC LIMIT 500`,
    ),
  ]);
  const byCommonDisk = disks.rows.map((d) => ({ path: d.path, identifier: d.identifier, source: d.source, vms: d.vms, copiesAvoided: Number(d.copies), bytesSaved: Number(d.saved), storedBytes: Number(d.stored) }));
  return {
    totalSaved: byCommonDisk.reduce((sum, d) => sum + d.bytesSaved, 0),
    copiesAvoided: byCommonDisk.reduce((sum, d) => sum + d.copiesAvoided, 0),
    byCommonDisk,
    byVm: vms.rows.map((v) => ({ vm: v.vm, source: v.source, backups: Number(v.backups), copiesAvoided: Number(v.copies), bytesSaved: Number(v.saved) })),
    byRun: runs.rows.map((r) => ({
      runId: r.run, at: r.at.toISOString(), vms: Number(r.vms), logicalBytes: Number(r.logical), bytesRead: Number(r.read),
      bytesWritten: Number(r.written), copiesAvoided: Number(r.copies), bytesSaved: Number(r.saved),
    })),
  };
}
