import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedCatalog } from '../../test/helpers';
import type { BackupImageManifest } from '../engine/repository/manifests';
import { inTransaction } from './db';
import { recordBackupImage, recordBackupImages, recordBatchIn } from './record-backup-image';

function image(id: string, createdAt: string, options: { vm?: string; configPath: string; disks: string[] }): BackupImageManifest {
  const vm = options.vm ?? 'web1';
  return {
    formatVersion: 1, id, createdAt,
    source: { name: 'lab', type: 'libvirt', path: '/srv/lab' },
    vm: { name: vm, uuid: 'u-1', configPath: options.configPath, configBase64: '' },
    disks: options.disks.map((name, index) => ({
      identifier: `path:${name}`, path: `/srv/lab/${name}`, relativePath: name, via: 'attached' as const, slot: `vd${'abc'[index]}`, target: name,
      format: 'raw' as const, versionToken: `v-${name}`, digest: name.padEnd(64, '0').replace(/[^0-9a-f]/g, 'a'), common: false, usedBy: [vm],
      action: 'stored' as const, logicalBytes: 100, bytesRead: 100, bytesWritten: 40,
    })),
    totals: { logicalBytes: 100 * options.disks.length, bytesRead: 100, bytesWritten: 40, bytesReferenced: 0 },
  };
}

describe('recording backup images', () => {
  let sql: pg.Pool;
  let sourceId: string;
  const one = async <T extends object>(text: string, values: unknown[] = []) => (await sql.query<T>(text, values)).rows;

  beforeAll(async () => {
    const catalog = await createMigratedCatalog();
    await catalog.db.$disconnect();
    sql = new pg.Pool({ connectionString: catalog.url, max: 4 });
    sourceId = (await one<{ id: string }>(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s1', 'lab', 'libvirt', '/srv/lab') RETURNING "id"`))[0].id;
  });
  afterAll(async () => sql?.end());

  it('records an image once, however many times and however concurrently it is recorded', async () => {
    const first = image('20261125T100000Z-aaaaaa', '2026-11-25T10:00:00.000Z', { configPath: '/srv/lab/web1.xml', disks: ['a.raw'] });
    const outcomes = await Promise.all([1, 2, 3].map(() => recordBackupImage(sql, { sourceId, image: first })));
    expect(outcomes.sort()).toEqual([false, false, true]);
    expect(await recordBackupImage(sql, { sourceId, image: first })).toBe(false);
    expect(await one(`SELECT "backupImageId" FROM "DiskReference"`)).toEqual([{ backupImageId: first.id }]);
  });

  it('lets an older image recorded late add history only: the newest says what the VM is now', async () => {
    const newer = image('20261125T120000Z-cccccc', '2026-11-25T12:00:00.000Z', { configPath: '/srv/lab/moved/web1.xml', disks: ['b.raw'] });
    const older = image('20261125T110000Z-bbbbbb', '2026-11-25T11:00:00.000Z', { configPath: '/srv/lab/web1.xml', disks: ['a.raw', 'old.raw'] });
    expect(await recordBackupImage(sql, { sourceId, image: newer })).toBe(true);
    expect(await recordBackupImage(sql, { sourceId, image: older })).toBe(true);
    expect(await one(`SELECT "configPath" FROM "Vm" WHERE "name" = 'web1'`)).toEqual([{ configPath: '/srv/lab/moved/web1.xml' }]);
    expect(await one(`SELECT d."identifier" FROM "VmDisk" vd JOIN "Disk" d ON d."id" = vd."diskId" ORDER BY 1`)).toEqual([{ identifier: 'path:b.raw' }]);
    // its references and fast-path versions are there all the same
    expect((await one(`SELECT 1 FROM "DiskReference" WHERE "backupImageId" = $1`, [older.id])).length).toBe(2);
    expect((await one(`SELECT 1 FROM "DiskVersion" WHERE "versionToken" = 'v-old.raw'`)).length).toBe(1);
  });

  it('records a batch in any order as it would one by one in order', async () => {
    const images = [
      image('20261125T130000Z-dddddd', '2026-11-25T13:00:00.000Z', { vm: 'db1', configPath: '/srv/lab/db1.xml', disks: ['db.raw'] }),
      image('20261125T140000Z-eeeeee', '2026-11-25T14:00:00.000Z', { vm: 'db1', configPath: '/srv/lab/db1-v2.xml', disks: ['db.raw', 'log.raw'] }),
    ];
    const result = await recordBackupImages(sql, images.reverse().map((i) => ({ sourceId, image: i })));
    expect(result).toEqual({ recorded: ['20261125T130000Z-dddddd', '20261125T140000Z-eeeeee'], skipped: [] });
    expect(await one(`SELECT "configPath" FROM "Vm" WHERE "name" = 'db1'`)).toEqual([{ configPath: '/srv/lab/db1-v2.xml' }]);
    expect(await one(`SELECT count(*)::int AS n FROM "VmDisk" vd JOIN "Vm" v ON v."id" = vd."vmId" WHERE v."name" = 'db1'`)).toEqual([{ n: 2 }]);
  });

  it('skips an image the database refuses and records the rest of its batch', async () => {
    const good = image('20261125T150000Z-ffffff', '2026-11-25T15:00:00.000Z', { vm: 'app1', configPath: '/srv/lab/app1.xml', disks: ['app.raw'] });
    const bad = image('20261125T150001Z-000bad', '2026-11-25T15:00:01.000Z', { vm: 'app\u00002', configPath: '/srv/lab/app2.xml', disks: ['app2.raw'] });
    const result = await recordBackupImages(sql, [{ sourceId, image: good }, { sourceId, image: bad }]);
    expect(result.recorded).toEqual([good.id]);
    expect(result.skipped).toEqual([{ id: bad.id, error: expect.stringMatching(/^refused by the catalog: /) }]);
    expect((await one(`SELECT 1 FROM "BackupImage" WHERE "id" = $1`, [good.id])).length).toBe(1);
  });

  it('in a rebuild\'s batch too: the refused image is left out, the batch is recorded', async () => {
    const good = ['20261125T160000Z-111111', '20261125T160001Z-222222'].map((id, i) => image(id, `2026-11-25T16:00:0${i}.000Z`, { vm: `batch${i}`, configPath: `/srv/lab/batch${i}.xml`, disks: [`batch${i}.raw`] }));
    const bad = image('20261125T160002Z-333bad', '2026-11-25T16:00:02.000Z', { vm: 'batch\u00003', configPath: '/srv/lab/b3.xml', disks: ['b3.raw'] });
    const result = await inTransaction(sql, (client) => recordBatchIn(client, [good[0], bad, good[1]].map((i) => ({ sourceId, image: i }))));
    expect(result.recorded).toEqual(good.map((i) => i.id));
    expect(result.skipped.map((s) => s.id)).toEqual([bad.id]);
    expect((await one(`SELECT 1 FROM "DiskReference" WHERE "backupImageId" = ANY($1)`, [good.map((i) => i.id)])).length).toBe(2);
  });
});
