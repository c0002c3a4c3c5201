import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedCatalog, seededRandom } from '../../test/helpers';
import type { BackupDiskEntry, BackupImageManifest } from '../engine/repository/manifests';
import { type DiskUse, type DiskWork, addSource, referencedWork, storedWork, diskDigest as digestOf, poolImage, vmLinks } from '../../test/disk-set-fixtures';
import { inTransaction } from './db';
import { setVmDisks } from './fleet-rows';
import { forgetImages } from './prune-images';
import { beginIndexWrite, recordBackupImage, recordBackupImageBatch, recordBatchIn } from './record-backup-image';

type Entry = Pick<BackupDiskEntry, 'digest' | 'via' | 'slot' | 'target' | 'path' | 'versionToken' | 'common' | 'action' | 'logicalBytes' | 'bytesRead' | 'bytesWritten'>;

const image = (id: string, createdAt: Date, vm: string, uses: DiskUse[], versions: Map<string, number>, work: (disk: string) => DiskWork, sharers: (disk: string) => string[]) =>
  poolImage(id, createdAt, vm, uses, { versions, work, sharers });

const entryOf = (d: BackupDiskEntry): Entry => ({
  digest: d.digest, via: d.via, slot: d.slot ?? null, target: d.target ?? null, path: d.path, versionToken: d.versionToken, common: d.common,
  action: d.action, logicalBytes: d.logicalBytes, bytesRead: d.bytesRead, bytesWritten: d.bytesWritten,
} as Entry);

describe('disk sets: an image names the set of its entries', () => {
  let sql: pg.Pool;
  let url: string;
  const rows = async <T extends object>(text: string, values: unknown[] = []) => (await sql.query<T>(text, values)).rows;
  beforeAll(async () => {
    const catalog = await createMigratedCatalog();
    await catalog.db.$disconnect();
    url = catalog.url;
    sql = new pg.Pool({ connectionString: catalog.url, max: 4 });
    await sql.query(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s1', 'pool', 'libvirt', '/pool')`);
  });
  afterAll(async () => sql?.end());

  it('reads back every image as it was recorded, in any order and batching, through edits and prunes (seeded model)', async () => {
    const random = seededRandom(17);
    const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)];
    const vms = Array.from({ length: 7 }, (_, i) => `vm${i}`);
    const pool = Array.from({ length: 9 }, (_, i) => `disk${i}`);
    const versions = new Map(pool.map((disk) => [disk, 1]));
    const seen = new Set<string>();
    // Each VM's disks now; most VMs share disk0 (a golden image) and disk1 (a config disk).
    const usesOf = new Map(vms.map((vm, i) => [vm, [{ disk: 'disk0', slot: 'vda' }, { disk: `disk${2 + (i % 7)}`, slot: 'vdb' }, ...(i % 3 ? [{ disk: 'disk1', slot: 'vdc' }] : [])]]));
    const recorded = new Map<string, BackupImageManifest>();
    const everRecordedNewest = new Map<string, BackupImageManifest>();
    const noteRecorded = (i: BackupImageManifest) => {
      recorded.set(i.id, i);
      const newest = everRecordedNewest.get(i.vm.name);
      if (!newest || newest.createdAt < i.createdAt) everRecordedNewest.set(i.vm.name, i);
    };
    let held: BackupImageManifest[] = [];
    let clock = Date.parse('2026-11-01T00:00:00Z');
    let n = 0;
    for (let round = 0; round < 40; round++) {
      // The source changes a little: a disk written, a disk attached or detached.
      if (random() < 0.4) { const disk = pick(pool); versions.set(disk, versions.get(disk)! + 1); }
      if (random() < 0.15) {
        const vm = pick(vms);
        const uses = usesOf.get(vm)!;
        const spare = pool.find((disk) => !uses.some((u) => u.disk === disk));
        if (random() < 0.5 && uses.length > 1) uses.pop();
        else if (spare) uses.push({ disk: spare, slot: `vd${'defgh'[uses.length % 5]}` });
      }
      const sharers = (disk: string) => vms.filter((vm) => usesOf.get(vm)!.some((u) => u.disk === disk));
      // A run backs up some VMs; what it read and stored is each disk's first use in the run.
      const readThisRun = new Set<string>();
      const batch: BackupImageManifest[] = [];
      for (const vm of vms.filter(() => random() < 0.7)) {
        const work = (disk: string) => {
          const digest = digestOf(disk, versions.get(disk)!);
          if (!seen.has(digest)) { seen.add(digest); readThisRun.add(disk); return { action: 'stored' as const, bytesRead: 100, bytesWritten: 40 }; }
          if (!readThisRun.has(disk) && random() < 0.1) { readThisRun.add(disk); return { action: 'referenced' as const, bytesRead: 100, bytesWritten: 0 }; }
          return { action: 'referenced' as const, bytesRead: 0, bytesWritten: 0 };
        };
        clock += 1000;
        batch.push(image(`img-${String(n++).padStart(4, '0')}`, new Date(clock), vm, usesOf.get(vm)!, versions, work, sharers));
      }
      // Some images are recorded late (a reconcile), some alone, the rest in batches of any size.
      const late = batch.filter(() => random() < 0.1);
      held.push(...late);
      const now = batch.filter((i) => !late.includes(i));
      while (now.length) {
        const slice = now.splice(0, 1 + Math.floor(random() * 4));
        if (slice.length === 1 && random() < 0.5) await recordBackupImage(sql, { sourceId: 's1', image: slice[0] });
        else expect((await recordBackupImageBatch(sql, slice.map((i) => ({ sourceId: 's1', image: i })))).skipped).toEqual([]);
        for (const i of slice) noteRecorded(i);
      }
      if (random() < 0.3 && held.length) {
        for (const i of held) { await recordBackupImage(sql, { sourceId: 's1', image: i }); noteRecorded(i); }
        held = [];
      }
      // Prune, now and then, a few images.
      if (random() < 0.2 && recorded.size > 4) {
        const gone = [...recorded.keys()].filter(() => random() < 0.3);
        await forgetImages(sql, gone, async () => undefined);
        for (const id of gone) recorded.delete(id);
      }

      // Every recorded image reads back as its manifest said, disk by disk in order.
      const references = await rows<Entry & { backupImageId: string; position: number }>(
        `SELECT "backupImageId", "position", "digest", "via", "slot", "target", "path", "versionToken", "common", "action",
                "logicalBytes"::int AS "logicalBytes", "bytesRead"::int AS "bytesRead", "bytesWritten"::int AS "bytesWritten"
           FROM "DiskReference" ORDER BY "backupImageId", "position"`,
      );
      const got = new Map<string, Entry[]>();
      for (const { backupImageId, position, ...entry } of references) {
        expect(position).toBe(got.get(backupImageId)?.length ?? 0);
        got.set(backupImageId, [...(got.get(backupImageId) ?? []), entry]);
      }
      const images = await rows<{ id: string }>('SELECT "id" FROM "BackupImage" ORDER BY "id"');
      expect(images.map((i) => i.id), `round ${round}: images`).toEqual([...recorded.keys()].sort());
      for (const [id, manifest] of recorded) expect(got.get(id), `round ${round}: ${id}`).toEqual(manifest.disks.map(entryOf));

      // Each VM's own disk links are its newest recorded image's.
      const links = await rows<{ vm: string; disk: string; via: string; slot: string | null }>(
        `SELECT v."name" AS vm, d."identifier" AS disk, vd."via", vd."slot" FROM "VmDisk" vd JOIN "Vm" v ON v."id" = vd."vmId" JOIN "Disk" d ON d."id" = vd."diskId"
          WHERE vd."via" <> 'shared' ORDER BY 1, 2`,
      );
      // (A prune leaves them: the newest image ever recorded, pruned or not.)
      for (const [vm, i] of everRecordedNewest) {
        expect(links.filter((l) => l.vm === vm).map((l) => `${l.disk} ${l.via} ${l.slot}`).sort(), `round ${round}: ${vm}'s disks`)
          .toEqual(i.disks.map((d) => `${d.identifier} ${d.via} ${d.slot}`).sort());
      }
      // The fast path knows every version an image recorded; no set outlives its images after a prune.
      const known = new Set((await rows<{ k: string }>(`SELECT d."identifier" || ' ' || v."versionToken" || ' ' || v."digest" AS k FROM "DiskVersion" v JOIN "Disk" d ON d."id" = v."diskId"`)).map((r) => r.k));
      for (const i of recorded.values()) for (const d of i.disks) expect(known.has(`${d.identifier} ${d.versionToken} ${d.digest}`)).toBe(true);
      const empty = await rows('SELECT s."id" FROM "DiskSet" s WHERE NOT EXISTS (SELECT 1 FROM "DiskSetEntry" e WHERE e."diskSetId" = s."id")');
      expect(empty, `round ${round}: sets without entries`).toEqual([]);
    }
    // Sets are shared: far fewer than images.
    const [{ sets, images }] = await rows<{ sets: number; images: number }>('SELECT (SELECT count(*)::int FROM "DiskSet") AS sets, (SELECT count(*)::int FROM "BackupImage") AS images');
    expect(sets).toBeLessThan(images);
  });

  describe('an unchanged VM', () => {
    const referenced = referencedWork;
    const stored = storedWork;
    const at = (minute: number) => new Date(Date.UTC(2026, 11, 1, 12, minute));
    let source = 0;
    const newSource = () => addSource(sql, `u${++source}`);
    const linksOf = (sourceId: string, vm: string) => vmLinks(sql, sourceId, vm);

    it('costs its BackupImage row alone: no other row of the catalog is written', async () => {
      const sourceId = await newSource();
      const versions = new Map([['gold', 1], ['cfg', 1], ...Array.from({ length: 20 }, (_, i) => [`overlay${i}`, 1] as [string, number])]);
      const vms = Array.from({ length: 20 }, (_, i) => `clone${i}`);
      const sharers = (disk: string) => (disk.startsWith('overlay') ? [`clone${disk.slice(7)}`] : vms);
      const uses = (i: number) => [{ disk: 'gold', slot: 'vda' }, { disk: `overlay${i}`, slot: 'vdb' }, { disk: 'cfg', slot: 'vdc' }];
      const run = (minute: number, work: (disk: string) => { action: 'stored' | 'referenced'; bytesRead: number; bytesWritten: number }) => vms.map((vm, i) => ({ sourceId, image: image(`${sourceId}-${minute}-${i}`, at(minute), vm, uses(i), versions, work, sharers) }));
      await recordBackupImageBatch(sql, run(0, stored));
      await recordBackupImageBatch(sql, run(1, referenced));
      // Its own statistics, in a new session (whose counters start at zero): what an unchanged run of 20 clones writes.
      const session = new pg.Pool({ connectionString: url, max: 1 });
      const written = await inTransaction(session, async (client) => {
        await beginIndexWrite(client);
        expect((await recordBatchIn(client, run(2, referenced))).recorded).toHaveLength(20);
        return (await client.query<{ relname: string; n: number }>(
          'SELECT relname, (n_tup_ins + n_tup_upd + n_tup_del)::int AS n FROM pg_stat_xact_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY 1',
        )).rows;
      }).finally(() => session.end());
      expect(written).toEqual([{ relname: 'BackupImage', n: 20 }]);
      // …and reads back as its run said.
      const refs = await rows<{ action: string; n: number }>(`SELECT "action", count(*)::int AS n FROM "DiskReference" WHERE "backupImageId" LIKE $1 GROUP BY 1`, [`${sourceId}-2-%`]);
      expect(refs).toEqual([{ action: 'referenced', n: 60 }]);
      // One disk written: that clone's image says so in full, the others still cost a row each.
      versions.set('overlay3', 2);
      await recordBackupImageBatch(sql, run(3, referenced).map((r, i) => (i === 3 ? { sourceId, image: image(r.image.id, at(3), 'clone3', uses(3), versions, (d) => (d === 'overlay3' ? stored() : referenced()), sharers) } : r)));
      const work = await rows<{ id: string; action: string }>(`SELECT "backupImageId" AS id, "action" FROM "ImageDiskWork" WHERE "backupImageId" LIKE $1`, [`${sourceId}-3-%`]);
      expect(work).toEqual([{ id: `${sourceId}-3-3`, action: 'stored' }]);
    });

    it('writes its links again after a scan changed them, or another image added one', async () => {
      const sourceId = await newSource();
      const versions = new Map([['a', 1], ['b', 1], ['c', 1]]);
      const both = [{ disk: 'a', slot: 'vda' }, { disk: 'b', slot: 'vdb' }];
      const solo = (disk: string) => ['x'].concat(disk === 'c' ? ['y'] : []);
      await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-1`, at(1), 'x', both, versions, stored, solo) });
      expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached', 'path:b attached']);
      // A scan (record-inventory writes links through setVmDisks) saw b detached; the next image names both again.
      const [{ id: vmId }] = await rows<{ id: string }>(`SELECT "id" FROM "Vm" WHERE "sourceId" = $1 AND "name" = 'x'`, [sourceId]);
      const [{ id: diskA }] = await rows<{ id: string }>(`SELECT "id" FROM "Disk" WHERE "sourceId" = $1 AND "identifier" = 'path:a'`, [sourceId]);
      await inTransaction(sql, (client) => setVmDisks(client, [vmId], [{ vmId, diskId: diskA, via: 'attached', slot: 'vda' }]));
      expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached']);
      await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-2`, at(2), 'x', both, versions, referenced, solo) });
      expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached', 'path:b attached']);
      // Another VM's image names x as a sharer of a disk x does not use: x's next image, unchanged, drops that link.
      await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-3`, at(3), 'y', [{ disk: 'c', slot: 'vda' }], versions, stored, solo) });
      expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached', 'path:b attached', 'path:c shared']);
      await recordBackupImage(sql, { sourceId, image: image(`${sourceId}-4`, at(4), 'x', both, versions, referenced, solo) });
      expect(await linksOf(sourceId, 'x')).toEqual(['path:a attached', 'path:b attached']);
    });
  });
});
