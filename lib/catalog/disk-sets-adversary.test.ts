import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedCatalog } from '../../test/helpers';
import { type DiskUse, type DiskWork, addSource, poolImage, referencedWork, storedWork, vmLinks } from '../../test/disk-set-fixtures';
import { beginIndexWrite, recordBackupImage, recordImagesIn } from './record-backup-image';
import { inTransaction } from './db';
import { setVmDisks } from './fleet-rows';
import { forgetImages } from './prune-images';

const image = (id: string, minute: number, vm: string, uses: DiskUse[], work: () => DiskWork, sharers: (disk: string) => string[]) =>
  poolImage(id, new Date(Date.UTC(2026, 11, 1, 12, minute)), vm, uses, { work, sharers });
const stored = storedWork;
const referenced = referencedWork;

describe('disk sets, adversarially', () => {
  let sql: pg.Pool;
  const rows = async <T extends object>(text: string, values: unknown[] = []) => (await sql.query<T>(text, values)).rows;
  let n = 0;
  const newSource = () => addSource(sql, `adv${++n}`);
  const linksOf = (sourceId: string, vm: string) => vmLinks(sql, sourceId, vm);
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
