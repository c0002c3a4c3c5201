import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, projectRoot } from '../../test/helpers';
import { migrate } from './migrate';

// The disk-sets migration over a catalog as the previous release left it, with odd rows.
let sql: pg.Pool;
const all = path.join(projectRoot, 'prisma', 'migrations');
const columns = `"backupImageId", "diskId", "digest", "via", "slot", "target", "path", "versionToken", "parentPointer", "parentPath", "parentVersion",
  "common", "action", "logicalBytes"::int AS "logicalBytes", "bytesRead"::int AS "bytesRead", "bytesWritten"::int AS "bytesWritten"`;
let before: Record<string, unknown>[] = [];

beforeAll(async () => {
  const url = await createTestDatabase();
  const previous = await fs.mkdtemp(path.join(os.tmpdir(), 'migrations-'));
  for (const name of await fs.readdir(all)) {
    if (name === '20261202100000_disk_sets') continue;
    await fs.cp(path.join(all, name), path.join(previous, name), { recursive: true });
  }
  await migrate(url, previous);
  sql = new pg.Pool({ connectionString: url, max: 2 });
  await sql.query(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s1', 'pool', 'libvirt', '/pool')`);
  await sql.query(`INSERT INTO "Vm" ("id", "sourceId", "name", "uuid", "configPath") VALUES ('v1', 's1', 'x', 'u', '/x.xml')`);
  await sql.query(`INSERT INTO "Disk" ("id", "sourceId", "identifier", "path", "format") VALUES ('d1', 's1', 'path:a', '/a', 'raw'), ('d2', 's1', 'path:b', '/b', 'raw')`);
  await sql.query(`INSERT INTO "StoredDisk" ("digest", "format", "logicalBytes", "storedBytes", "createdAt") VALUES ('g1', 'raw', 1, 1, now()), ('g2', 'raw', 1, 1, now())`);
  const images = ['i1', 'i2', 'i3', 'i4', 'i5', 'i6'];
  for (const [n, id] of images.entries()) {
    await sql.query(`INSERT INTO "BackupImage" ("id", "vmId", "createdAt", "logicalBytes", "bytesRead", "bytesWritten", "bytesReferenced") VALUES ($1, 'v1', now() + $2 * interval '1 minute', 0, 0, 0, 0)`, [id, n]);
  }
  const ref = (id: string, image: string, r: Partial<Record<string, unknown>>) => sql.query(
    `INSERT INTO "DiskReference" ("id", "backupImageId", "diskId", "digest", "via", "slot", "target", "path", "versionToken", "parentPointer", "parentPath", "parentVersion", "common", "action", "logicalBytes", "bytesRead", "bytesWritten")
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
    [id, image, r.diskId ?? 'd1', r.digest ?? 'g1', r.via ?? 'attached', r.slot ?? null, r.target ?? null, r.path ?? '/a', r.versionToken ?? 'v1',
      r.parentPointer ?? null, r.parentPath ?? null, r.parentVersion ?? null, r.common ?? false, r.action ?? 'referenced', r.logicalBytes ?? 10, r.bytesRead ?? 0, r.bytesWritten ?? 0],
  );
  // i1, i2: the same disks (NULL slot, target, parents), one stored them, one referenced them.
  await ref('r1', 'i1', { action: 'stored', bytesRead: 5, bytesWritten: 3 });
  await ref('r2', 'i1', { diskId: 'd2', digest: 'g2', path: '/b', slot: 'vdb', parentPointer: 'p', parentPath: '/a', parentVersion: 'v1' });
  await ref('r3', 'i2', {});
  await ref('r4', 'i2', { diskId: 'd2', digest: 'g2', path: '/b', slot: 'vdb', parentPointer: 'p', parentPath: '/a', parentVersion: 'v1' });
  // i3: one reference twice.
  await ref('r5', 'i3', { slot: 'vda' });
  await ref('r6', 'i3', { slot: 'vda' });
  // i4: none. i5, i6: fields that hold the migration's separators (a path may hold any byte but / and NUL).
  await ref('r7', 'i5', { target: 'a\x1fb', path: 'c' });
  await ref('r8', 'i6', { target: 'a', path: 'b\x1fc' });
  before = (await sql.query(`SELECT ${columns} FROM "DiskReference" ORDER BY 1, "id"`)).rows;
  await migrate(url, all);
});
afterAll(async () => sql?.end());

const sorted = (rows: Record<string, unknown>[]) => rows.map((r) => JSON.stringify(r)).sort();

it('the view reads back every reference the table held', async () => {
  const after = (await sql.query(`SELECT ${columns} FROM "DiskReference"`)).rows;
  expect(sorted(after)).toEqual(sorted(before));
  const { rows: [{ images }] } = await sql.query('SELECT count(*)::int AS images FROM "BackupImage" WHERE "diskSetId" IS NULL');
  expect(images).toBe(1); // i4
});
