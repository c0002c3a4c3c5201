import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { createMigratedCatalog, tempDir } from '../../test/helpers';
import type { BackupImageManifest } from '../engine/repository/manifests';
import { scanSource } from '../engine/sources/inventory';
import { recordBackupImageBatch } from './record-backup-image';
import { recordInventory } from './record-inventory';

it('a scan that meets a backup batch recording one of its VMs is not failed by the deadlock PostgreSQL resolves', async () => {
  const root = await tempDir();
  const names = Array.from({ length: 40 }, (_, i) => `desk${String(i + 1).padStart(2, '0')}`);
  await fs.writeFile(path.join(root, 'golden.raw'), Buffer.alloc(4096, 1));
  for (const name of names) {
    await fs.writeFile(path.join(root, `${name}.xml`), `<domain><name>${name}</name><uuid>u-${name}</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='golden.raw'/><target dev='vda'/><shareable/></disk></devices></domain>`);
  }
  const catalog = await createMigratedCatalog();
  await catalog.db.$disconnect();
  const sql = new pg.Pool({ connectionString: catalog.url, max: 4 });
  try {
    const { rows: [{ id: sourceId }] } = await sql.query<{ id: string }>(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s1', 'pool', 'libvirt', $1) RETURNING "id"`, [root]);
    const inventory = await scanSource({ name: 'pool', type: 'libvirt', path: root });
    await recordInventory(sql, { sourceId, inventory });
    const golden = inventory.disks.get(path.join(root, 'golden.raw'))!;
    // desk40's image names the first 32 sharers: recording it locks desk40, then touches desk01..desk32.
    const image = {
      formatVersion: 2, id: '20261201T100000Z-aaaaaa', createdAt: '2026-12-01T10:00:00.000Z',
      source: { name: 'pool', type: 'libvirt', path: root },
      vm: { name: 'desk40', uuid: 'u-desk40', configPath: path.join(root, 'desk40.xml'), configBase64: '' },
      disks: [{
        identifier: golden.identifier, path: golden.path, relativePath: golden.relativePath, via: 'attached', slot: 'vda', target: 'golden.raw', format: 'raw',
        versionToken: golden.versionToken, digest: 'a'.repeat(64), common: true, usedBy: names.slice(0, 32), usedByCount: 40,
        action: 'referenced', logicalBytes: 4096, bytesRead: 0, bytesWritten: 0,
      }],
      totals: { logicalBytes: 4096, bytesRead: 0, bytesWritten: 0, bytesReferenced: 4096 },
    } satisfies BackupImageManifest;
    // Another backup's batch holds the golden image's row a moment: this batch waits there with desk40 locked...
    const other = await sql.connect();
    await other.query('BEGIN');
    await other.query(`SELECT 1 FROM "Disk" WHERE "sourceId" = $1 FOR UPDATE`, [sourceId]);
    const batch = recordBackupImageBatch(sql, [{ sourceId, image }]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // ...while an unchanged scan's record (a backup's, or "Scan now") takes desk01..desk39 and waits for desk40.
    const scan = recordInventory(sql, { sourceId, inventory });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await other.query('COMMIT');
    other.release();
    // The batch then waits for desk01: a cycle, and PostgreSQL fails one of the two. Neither may fail its caller.
    await expect(Promise.all([scan, batch])).resolves.toEqual([expect.objectContaining({ vms: 40 }), { recorded: [image.id], skipped: [] }]);
  } finally {
    await sql.end();
  }
});
