/** Backup images of a small pool, and catalog lookups, for the tests of disk sets (lib/catalog/disk-sets*.test.ts). */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { BackupDiskEntry, BackupImageManifest } from '../lib/engine/repository/manifests';

export const diskDigest = (disk: string, version: number) => createHash('sha256').update(`${disk}@${version}`).digest('hex');

export type DiskUse = { disk: string; slot: string };
export type DiskWork = { action: 'stored' | 'referenced'; bytesRead: number; bytesWritten: number };
export const storedWork = (): DiskWork => ({ action: 'stored', bytesRead: 100, bytesWritten: 40 });
export const referencedWork = (): DiskWork => ({ action: 'referenced', bytesRead: 0, bytesWritten: 0 });

/** A VM's image naming raw disks /pool/<disk>.raw at their version in `versions` (1 when absent). */
export function poolImage(id: string, createdAt: Date, vm: string, uses: DiskUse[], options: { versions?: Map<string, number>; work: (disk: string) => DiskWork; sharers: (disk: string) => string[] }): BackupImageManifest {
  const version = (disk: string) => options.versions?.get(disk) ?? 1;
  const disks: BackupDiskEntry[] = uses.map(({ disk, slot }) => {
    const usedBy = options.sharers(disk);
    return {
      identifier: `path:${disk}`, path: `/pool/${disk}.raw`, relativePath: `${disk}.raw`, via: 'attached', slot, target: `${disk}.raw`, format: 'raw',
      versionToken: `v${version(disk)}`, digest: diskDigest(disk, version(disk)), common: usedBy.length > 1, usedBy,
      logicalBytes: 1000 + disk.length, ...options.work(disk),
    };
  });
  const sum = (pick: (d: BackupDiskEntry) => number) => disks.reduce((total, d) => total + pick(d), 0);
  return {
    formatVersion: 3, id, createdAt: createdAt.toISOString(),
    source: { name: 'pool', type: 'libvirt', path: '/pool' },
    vm: { name: vm, uuid: `uuid-${vm}`, configPath: `/pool/${vm}.xml`, configBase64: '' },
    disks,
    totals: { logicalBytes: sum((d) => d.logicalBytes), bytesRead: sum((d) => d.bytesRead), bytesWritten: sum((d) => d.bytesWritten), bytesReferenced: 0 },
  };
}

export async function addSource(sql: pg.Pool, id: string): Promise<string> {
  await sql.query(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ($1, $1, 'libvirt', '/pool')`, [id]);
  return id;
}

/** A VM's disk links as `<identifier> <via>`, sorted. */
export async function vmLinks(sql: pg.Pool, sourceId: string, vm: string): Promise<string[]> {
  const { rows } = await sql.query<{ link: string }>(
    `SELECT d."identifier" || ' ' || vd."via" AS link FROM "VmDisk" vd JOIN "Vm" v ON v."id" = vd."vmId" JOIN "Disk" d ON d."id" = vd."diskId"
      WHERE v."sourceId" = $1 AND v."name" = $2`, [sourceId, vm]);
  return rows.map((r) => r.link).sort();
}
