import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedCatalog } from '../../test/helpers';
import type { BackupDiskEntry, BackupImageManifest } from '../engine/repository/manifests';
import { beginIndexWrite, recordBackupImage, recordImagesIn } from './record-backup-image';
import { inTransaction } from './db';
import { setVmDisks } from './fleet-rows';
import { forgetImages } from './prune-images';

const digestOf = (disk: string, version: number) => createHash('sha256').update(`${disk}@${version}`).digest('hex');
type Work = { action: 'stored' | 'referenced'; bytesRead: number; bytesWritten: number };
const stored = (): Work => ({ action: 'stored', bytesRead: 100, bytesWritten: 40 });
const referenced = (): Work => ({ action: 'referenced', bytesRead: 0, bytesWritten: 0 });

function image(id: string, minute: number, vm: string, uses: { disk: string; slot: string }[], work: () => Work, sharers: (disk: string) => string[]): BackupImageManifest {
  const disks: BackupDiskEntry[] = uses.map(({ disk, slot }) => ({
    identifier: `path:${disk}`, path: `/pool/${disk}.raw`, relativePath: `${disk}.raw`, via: 'attached', slot, target: `${disk}.raw`, format: 'raw',
    versionToken: 'v1', digest: digestOf(disk, 1), common: sharers(disk).length > 1, usedBy: sharers(disk), logicalBytes: 1000, ...work(),
  }));
  const sum = (pick: (d: BackupDiskEntry) => number) => disks.reduce((t, d) => t + pick(d), 0);
  return {
    formatVersion: 3, id, createdAt: new Date(Date.UTC(2026, 11, 1, 12, minute)).toISOString(),
    source: { name: 'pool', type: 'libvirt', path: '/pool' },
    vm: { name: vm, uuid: `uuid-${vm}`, configPath: `/pool/${vm}.xml`, configBase64: '' },
    disks,
    totals: { logicalBytes: sum((d) => d.logicalBytes), bytesRead: sum((d) => d.bytesRead), bytesWritten: sum((d) => d.bytesWritten), bytesReferenced: 0 },
  };
}

describe('disk sets, adversarially', () => {
  let sql: pg.Pool;
  const rows = async <T extends object>(text: string, values: unknown[] = []) => (await sql.query<T>(text, values)).rows;
  let n = 0;
  const newSource = async () => {
    const id = `adv${++n}`;
    await sql.query(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ($1, $1, 'libvirt', '/pool')`, [id]);
    return id;
  };
  const linksOf = async (sourceId: string, vm: string) => (await rows<{ link: string }>(
    `SELECT d."identifier" || ' ' || vd."via" AS link FROM "VmDisk" vd JOIN "Vm" v ON v."id" = vd."vmId" JOIN "Disk" d ON d."id" = vd."diskId"
      WHERE v."sourceId" = $1 AND v."name" = $2 ORDER BY 1`, [sourceId, vm])).map((r) => r.link);
  beforeAll(async () => {
    const catalog = await createMigratedCatalog();
    await catalog.db.$disconnect();
    sql = new pg.Pool({ connectionString: catalog.url, max: 6 });
  });
  afterAll(async () => sql?.end());

  it('a share row another recorder commits while a VM\'s links are written from a set is dropped by the VM\'s next image, as when the two run one after the other', async () => {
    const sourceId = await newSource();
    const both = [{ disk: 'a', slot: 'vda' }, { disk: 'b', slot: 'vdb' }];
    const solo = (disk: string) => ['x'].concat(disk === 'c' ? ['y'] : []);
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-1`, 1, 'x', both, stored, solo) });
    // A scan saw b detached: x's links no longer come from a set (Vm.diskSetId null).
    const [{ id: vmId }] = await rows<{ id: string }>(`SELECT "id" FROM "Vm" WHERE "sourceId" = $1 AND "name" = 'x'`, [sourceId]);
    const [{ id: diskA }] = await rows<{ id: string }>(`SELECT "id" FROM "Disk" WHERE "sourceId" = $1 AND "identifier" = 'path:a'`, [sourceId]);
    await inTransaction(sql, (client) => setVmDisks(client, [vmId], [{ vmId, diskId: diskA, via: 'attached', slot: 'vda' }]));

    // T3 records y's image, which names x as a sharer of c. Between creating the sharers it names (x exists: nothing
    // to wait for) and inserting their share rows, T1 records x's next image, writing x's links from the set; T3
    // commits as soon as it can, T1 a moment later. (Real recorders: two runs, or a run and a reconcile, of one source.)
    const t1 = await sql.connect();
    const t3 = await sql.connect();
    let t1Committed: Promise<unknown> = Promise.resolve();
    try {
      await t1.query('BEGIN');
      await beginIndexWrite(t1);
      await t3.query('BEGIN');
      await t3.query("SET LOCAL lock_timeout = '5s'");
      await beginIndexWrite(t3);
      const query = t3.query.bind(t3) as (...args: unknown[]) => Promise<unknown>;
      (t3 as unknown as { query: unknown }).query = async (...args: unknown[]) => {
        if (typeof args[0] === 'string' && args[0].includes(`'shared' FROM unnest`)) {
          await recordImagesIn(t1, [{ sourceId, image: image(`${sourceId}-2`, 2, 'x', both, referenced, solo) }]);
          t1Committed = new Promise((resolve) => setTimeout(resolve, 500)).then(() => t1.query('COMMIT'));
        }
        return query(...args);
      };
      await recordImagesIn(t3, [{ sourceId, image: image(`${sourceId}-3`, 3, 'y', [{ disk: 'c', slot: 'vda' }], stored, solo) }]);
      (t3 as unknown as { query: unknown }).query = query;
      await t3.query('COMMIT');
      await t1Committed;
    } finally {
      t1.release();
      t3.release();
    }
    expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached', 'path:b attached', 'path:c shared']);
    // x's next image, unchanged: the share row y's image added goes (disk-sets.test.ts: the serial case).
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-4`, 4, 'x', both, referenced, solo) });
    expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached', 'path:b attached']);
  });
  it('a source goes with its sets, images and disks (the deferred disk key, the images\' set key), and after a prune', async () => {
    const sourceId = await newSource();
    const uses = [{ disk: 'a', slot: 'vda' }];
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-1`, 1, 'x', uses, stored, () => ['x']) });
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-2`, 2, 'x', uses, referenced, () => ['x']) });
    await sql.query('DELETE FROM "Source" WHERE "id" = $1', [sourceId]);
    expect(await rows('SELECT 1 FROM "DiskSet" WHERE "sourceId" = $1', [sourceId])).toEqual([]);
    const other = await newSource();
    await recordBackupImage(sql, { sourceId: other, image: image(`${other}-1`, 1, 'x', uses, stored, () => ['x']) });
    await forgetImages(sql, [`${other}-1`], async () => undefined);
    await sql.query('DELETE FROM "Source" WHERE "id" = $1', [other]);
  });

  it('A, then B, then A again, with the set of A swept between: links follow the newest image', async () => {
    const sourceId = await newSource();
    const a = [{ disk: 'a', slot: 'vda' }];
    const b = [{ disk: 'a', slot: 'vda' }, { disk: 'b', slot: 'vdb' }];
    const solo = () => ['x'];
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-1`, 1, 'x', a, stored, solo) });
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-2`, 2, 'x', b, stored, solo) });
    await forgetImages(sql, [`${sourceId}-1`], async () => undefined);
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-3`, 3, 'x', a, referenced, solo) });
    expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached']);
    await forgetImages(sql, [`${sourceId}-3`], async () => undefined);
    // The newest image (A) pruned: links stay A's (as before sets); the next image, B again, writes B's.
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-4`, 4, 'x', b, referenced, solo) });
    expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached', 'path:b attached']);
    // A zero-disk image, then A.
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-5`, 5, 'x', [], referenced, solo) });
    expect(await linksOf(sourceId, 'x')).toEqual([]);
    await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-6`, 6, 'x', a, referenced, solo) });
    expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached']);
    const refs = await rows<{ id: string; n: number }>(`SELECT "backupImageId" AS id, count(*)::int AS n FROM "DiskReference" WHERE "backupImageId" LIKE $1 GROUP BY 1 ORDER BY 1`, [`${sourceId}-%`]);
    expect(refs).toEqual([{ id: `${sourceId}-2`, n: 2 }, { id: `${sourceId}-4`, n: 2 }, { id: `${sourceId}-6`, n: 1 }]);
  });
});
