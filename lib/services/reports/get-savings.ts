import type { CatalogSql } from '../../catalog/db';
import { type BackupRunSummary, recentBackupRuns } from './recent-runs';

export type DiskSavings = { path: string; identifier: string; source: string; vms: string[]; copiesAvoided: number; bytesSaved: number; bytesReused: number; storedBytes: number };
export type VmSavings = { vm: string; source: string; backups: number; bytesSaved: number; bytesReused: number };
export type Savings = { totalSaved: number; totalReused: number; copiesAvoided: number; byCommonDisk: DiskSavings[]; byVm: VmSavings[]; byRun: BackupRunSummary[] };

/**
 * Every version (stored copy) of every disk, with how many VMs' backups name it and how many backups in all:
 * `vms` VMs share one stored copy where each would otherwise have stored its own (sharing saves (vms − 1) copies),
 * and a VM's later backups of an unchanged disk name its earlier copy (incremental reuse saves (images − vms) more).
 * The two add up to every backed-up disk but one copy of each version. One definition for `stats` and the Savings page.
 */
export const DISK_VERSION_USES = `
  uses AS (
    SELECT r."diskId", r."digest", b."vmId", count(*) AS images, max(r."logicalBytes") AS bytes, bool_or(r."common") AS common
    FROM "DiskReference" r JOIN "BackupImage" b ON b."id" = r."backupImageId"
    GROUP BY r."diskId", r."digest", b."vmId"
  ),
  versions AS (
    SELECT "diskId", "digest", count(*) AS vms, sum(images) AS images, max(bytes) AS bytes, bool_or(common) AS common
    FROM uses GROUP BY "diskId", "digest"
  )`;

/**
 * What sharing between VMs saved (the headline: a common disk stored once, not once per VM), apart from what
 * incremental reuse saved (a VM's unchanged disk not stored again at its next backup), per common disk, per VM
 * (each VM credited its part of a shared copy: (vms − 1) / vms of it), and per run what was referenced unread.
 */
export async function getSavings(sql: CatalogSql): Promise<Savings> {
  const [disks, vms, byRun] = await Promise.all([
    sql.query<{ path: string; identifier: string; source: string; vms: string[]; copies: string; saved: string; reused: string; stored: string }>(
      `WITH ${DISK_VERSION_USES}
       SELECT d."path", d."identifier", s."name" AS source,
         ARRAY(SELECT DISTINCT v."name" FROM "VmDisk" vd JOIN "Vm" v ON v."id" = vd."vmId" WHERE vd."diskId" = d."id" ORDER BY 1) AS vms,
         sum(x.vms - 1) AS copies, sum((x.vms - 1) * x.bytes) AS saved, sum((x.images - x.vms) * x.bytes) AS reused,
         (SELECT coalesce(sum(sd."storedBytes"), 0) FROM "StoredDisk" sd WHERE sd."digest" IN (SELECT v2."digest" FROM versions v2 WHERE v2."diskId" = d."id")) AS stored
       FROM versions x JOIN "Disk" d ON d."id" = x."diskId" JOIN "Source" s ON s."id" = d."sourceId"
       GROUP BY d."id", s."name" HAVING bool_or(x.common) OR max(x.vms) > 1 ORDER BY saved DESC, d."path"`,
    ),
    sql.query<{ vm: string; source: string; backups: string; saved: string; reused: string }>(
      `WITH ${DISK_VERSION_USES}
       SELECT v."name" AS vm, s."name" AS source, (SELECT count(*) FROM "BackupImage" b WHERE b."vmId" = v."id") AS backups,
         coalesce(sum(u.bytes * (x.vms - 1)::numeric / x.vms), 0) AS saved, coalesce(sum((u.images - 1) * u.bytes), 0) AS reused
       FROM "Vm" v JOIN "Source" s ON s."id" = v."sourceId" JOIN uses u ON u."vmId" = v."id"
       JOIN versions x ON x."diskId" = u."diskId" AND x."digest" = u."digest"
       GROUP BY v."id", s."name" ORDER BY saved DESC, v."name"`,
    ),
    recentBackupRuns(sql, { limit: 500 }),
  ]);
  const byCommonDisk = disks.rows.map((d) => ({
    path: d.path, identifier: d.identifier, source: d.source, vms: d.vms, copiesAvoided: Number(d.copies), bytesSaved: Number(d.saved), bytesReused: Number(d.reused), storedBytes: Number(d.stored),
  }));
  const byVm = vms.rows.map((v) => ({ vm: v.vm, source: v.source, backups: Number(v.backups), bytesSaved: Math.round(Number(v.saved)), bytesReused: Number(v.reused) }));
  // The totals follow from the rows: every disk a version of which two VMs name is listed (sharing is 0 elsewhere), and
  // every VM's own re-backups add up to all reuse.
  return {
    totalSaved: byCommonDisk.reduce((sum, d) => sum + d.bytesSaved, 0), totalReused: byVm.reduce((sum, v) => sum + v.bytesReused, 0),
    copiesAvoided: byCommonDisk.reduce((sum, d) => sum + d.copiesAvoided, 0), byCommonDisk, byVm, byRun,
  };
}
