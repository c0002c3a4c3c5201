import type { CatalogSql } from '../../catalog/db';
import { DISK_VERSION_USES } from './get-savings';

export type CatalogStats = {
  sources: number; vms: number; vmsProtected: number; backups: number; disks: number; commonDisks: number;
  storedDisks: number; logicalBytes: number; bytesRead: number; storedBytes: number;
  bytesReferenced: number;
  /** What sharing between VMs saved: each version of a disk stored once, not once per VM whose backups name it. */
  savedByCommonDisks: number;
  /** What incremental reuse saved: a VM's later backups of an unchanged disk naming its earlier copy. */
  savedByReuse: number;
  dedupRatio: number;
};

/** One statement: the CLI's `stats` should not wait for the ORM to warm up for ten small aggregates. */
export async function getStats(sql: CatalogSql): Promise<CatalogStats> {
  const { rows: [row] } = await sql.query<Record<string, string>>(
    `WITH ${DISK_VERSION_USES}
     SELECT
       (SELECT count(*) FROM "Source") AS sources,
       (SELECT count(*) FROM "Vm") AS vms,
       (SELECT count(*) FROM "Vm" v WHERE EXISTS (SELECT 1 FROM "BackupImage" b WHERE b."vmId" = v.id)) AS "vmsProtected",
       (SELECT count(*) FROM "BackupImage") AS backups,
       (SELECT count(*) FROM "Disk") AS disks,
       (SELECT count(*) FROM "Disk" WHERE common) AS "commonDisks",
       (SELECT count(*) FROM "StoredDisk") AS "storedDisks",
       (SELECT coalesce(sum("logicalBytes"), 0) FROM "BackupImage") AS "logicalBytes",
       (SELECT coalesce(sum("bytesRead"), 0) FROM "BackupImage") AS "bytesRead",
       (SELECT coalesce(sum("bytesReferenced"), 0) FROM "BackupImage") AS "bytesReferenced",
       (SELECT coalesce(sum("storedBytes"), 0) FROM "StoredDisk") AS "storedBytes",
       (SELECT coalesce(sum((vms - 1) * bytes), 0) FROM versions) AS "savedByCommonDisks",
       (SELECT coalesce(sum((images - vms) * bytes), 0) FROM versions) AS "savedByReuse"`,
  );
  const n = (key: string) => Number(row[key]);
  const logicalBytes = n('logicalBytes');
  const storedBytes = n('storedBytes');
  return {
    sources: n('sources'), vms: n('vms'), vmsProtected: n('vmsProtected'), backups: n('backups'), disks: n('disks'),
    commonDisks: n('commonDisks'), storedDisks: n('storedDisks'), logicalBytes, bytesRead: n('bytesRead'), storedBytes,
    bytesReferenced: n('bytesReferenced'), savedByCommonDisks: n('savedByCommonDisks'), savedByReuse: n('savedByReuse'),
    dedupRatio: storedBytes > 0 ? Math.round((logicalBytes / storedBytes) * 100) / 100 : 0,
  };
}
