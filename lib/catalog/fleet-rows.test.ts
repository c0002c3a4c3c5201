import pg from 'pg';
import { expect, it } from 'vitest';
import { createMigratedCatalog, seededRandom } from '../../test/helpers';
import type { BackupImageManifest } from '../engine/repository/manifests';
import { type VmDiskLink, setVmDisks, upsertDisks, upsertVms } from './fleet-rows';
import { recordBackupImageBatch } from './record-backup-image';

it('writes only what changed, and ends with exactly the rows a full rewrite would (seeded model)', async () => {
  const catalog = await createMigratedCatalog();
  await catalog.db.$disconnect();
  const sql = new pg.Pool({ connectionString: catalog.url, max: 2 });
  try {
    await sql.query(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s1', 'pool', 'libvirt', '/pool')`);
    const random = seededRandom(7);
    const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)];
    const vmNames = Array.from({ length: 12 }, (_, i) => `vm${i}`);
    const diskIds = Array.from({ length: 8 }, (_, i) => `disk${i}`);
    // The model: what each VM's rows are, and each disk's attributes.
    const vmDisks = new Map<string, Map<string, { via: string; slot: string | null }>>();
    const disks = new Map<string, { path: string; format: string; common: boolean }>();
    const vmId = new Map<string, string>();
    const diskId = new Map<string, string>();
    for (let round = 0; round < 60; round++) {
      const client = await sql.connect();
      try {
        await client.query('BEGIN');
        // VMs locked or made: every one asked for comes back, made once.
        const asked = vmNames.filter(() => random() < 0.5);
        const vms = await upsertVms(client, asked.map((name) => ({ sourceId: 's1', name, uuid: '', configPath: '' })), { onConflict: 'lock' });
        expect(vms.map((v) => v.name).sort(), `round ${round}: VMs`).toEqual([...asked].sort());
        for (const v of vms) {
          if (vmId.has(v.name)) expect(v.id).toBe(vmId.get(v.name));
          vmId.set(v.name, v.id);
        }
        // Disks with attributes that sometimes change: every one comes back, with the attributes asked for.
        const wanted = diskIds.filter(() => random() < 0.6).map((identifier) => ({
          sourceId: 's1', identifier, path: `/pool/${identifier}${random() < 0.2 ? '-moved' : ''}.img`, format: pick(['raw', 'qcow2']), common: random() < 0.5, parentPath: null, sizeBytes: 0,
        }));
        const written = await upsertDisks(client, wanted, { onConflict: 'attributes' });
        expect(written.map((d) => d.identifier).sort(), `round ${round}: disks`).toEqual(wanted.map((d) => d.identifier).sort());
        for (const d of written) {
          if (diskId.has(d.identifier)) expect(d.id).toBe(diskId.get(d.identifier));
          diskId.set(d.identifier, d.id);
        }
        for (const d of wanted) disks.set(d.identifier, { path: d.path, format: d.format, common: d.common });
        // Links of some VMs, duplicates (a disk in two slots) and all: each VM and disk keeps one row.
        const links: VmDiskLink[] = [];
        for (const name of asked) {
          for (let n = Math.floor(random() * 4); n > 0; n--) {
            const disk = pick([...diskId.keys()]);
            if (disk) links.push({ vmId: vmId.get(name)!, diskId: diskId.get(disk)!, via: pick(['attached', 'parent', 'shared']), slot: pick([null, 'vda', 'vdb']) });
          }
        }
        await setVmDisks(client, asked.map((name) => vmId.get(name)!), links);
        await client.query('COMMIT');
        for (const name of asked) {
          const before = vmDisks.get(name) ?? new Map();
          const after = new Map<string, { via: string; slot: string | null }>();
          for (const link of links.filter((l) => l.vmId === vmId.get(name))) {
            const disk = [...diskId].find(([, id]) => id === link.diskId)![0];
            if (after.has(disk)) continue;
            // A row that matches any of its links stays as it is; else the first link is written.
            const same = links.filter((l) => l.vmId === link.vmId && l.diskId === link.diskId);
            const kept = before.get(disk);
            after.set(disk, kept && same.some((l) => l.via === kept.via && l.slot === kept.slot) ? kept : { via: link.via, slot: link.slot });
          }
          vmDisks.set(name, after);
        }
      } finally {
        client.release();
      }
      const { rows } = await sql.query<{ vm: string; disk: string; via: string; slot: string | null }>(
        'SELECT v."name" AS vm, d."identifier" AS disk, vd."via", vd."slot" FROM "VmDisk" vd JOIN "Vm" v ON v."id" = vd."vmId" JOIN "Disk" d ON d."id" = vd."diskId"',
      );
      const expected = [...vmDisks].flatMap(([vm, uses]) => [...uses].map(([disk, use]) => ({ vm, disk, ...use })));
      const order = (a: { vm: string; disk: string }, b: { vm: string; disk: string }) => `${a.vm}/${a.disk}`.localeCompare(`${b.vm}/${b.disk}`);
      expect(rows.sort(order), `round ${round}: VmDisk`).toEqual(expected.sort(order));
      const { rows: diskRows } = await sql.query<{ identifier: string; path: string; format: string; common: boolean }>('SELECT "identifier", "path", "format", "common" FROM "Disk"');
      expect(Object.fromEntries(diskRows.map((d) => [d.identifier, { path: d.path, format: d.format, common: d.common }])), `round ${round}: Disk`).toEqual(Object.fromEntries(disks));
    }
  } finally {
    await sql.end();
  }
});

const image = (vm: string, id: string, usedBy: string[]): BackupImageManifest => ({
  formatVersion: 2, id, createdAt: '2026-12-01T10:00:00.000Z',
  source: { name: 'pool', type: 'libvirt', path: '/pool' },
  vm: { name: vm, uuid: `u-${vm}`, configPath: `/pool/${vm}.xml`, configBase64: '' },
  disks: [{
    identifier: 'path:golden.raw', path: '/pool/golden.raw', relativePath: 'golden.raw', via: 'attached', slot: 'vda', target: 'golden.raw', format: 'raw',
    versionToken: 'v1', digest: 'a'.repeat(64), common: true, usedBy, usedByCount: usedBy.length,
    action: 'referenced', logicalBytes: 4096, bytesRead: 0, bytesWritten: 0,
  }],
  totals: { logicalBytes: 4096, bytesRead: 0, bytesWritten: 0, bytesReferenced: 4096 },
});

it('two batches whose images name each other as sharers of a disk wait for each other, not deadlock (the share rows\' key-share locks meet no FOR UPDATE)', async () => {
  const catalog = await createMigratedCatalog();
  await catalog.db.$disconnect();
  const sql = new pg.Pool({ connectionString: catalog.url, max: 4 });
  let deadlocks = 0;
  sql.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const result = query(...args);
      return result instanceof Promise ? result.catch((err: { code?: string }) => { if (err.code === '40P01') deadlocks++; throw err; }) : result;
    };
  });
  try {
    await sql.query(`INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s1', 'pool', 'libvirt', '/pool')`);
    await sql.query(`INSERT INTO "Vm" ("id", "sourceId", "name", "uuid", "configPath") VALUES ('va', 's1', 'a', 'u-a', '/pool/a.xml'), ('vb', 's1', 'b', 'u-b', '/pool/b.xml')`);
    await sql.query(`INSERT INTO "Disk" ("id", "sourceId", "identifier", "path", "format", "common", "sizeBytes") VALUES ('g', 's1', 'path:golden.raw', '/pool/golden.raw', 'raw', true, 0)`);
    const other = await sql.connect();
    await other.query('BEGIN');
    await other.query(`SELECT 1 FROM "Disk" FOR UPDATE`);
    const a = recordBackupImageBatch(sql, [{ sourceId: 's1', image: image('a', '20261201T100000Z-aaaaaa', ['a', 'b']) }]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const b = recordBackupImageBatch(sql, [{ sourceId: 's1', image: image('b', '20261201T100000Z-bbbbbb', ['a', 'b']) }]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await other.query('COMMIT');
    other.release();
    await expect(Promise.all([a, b])).resolves.toEqual([expect.objectContaining({ recorded: ['20261201T100000Z-aaaaaa'] }), expect.objectContaining({ recorded: ['20261201T100000Z-bbbbbb'] })]);
    expect(deadlocks).toBe(0);
  } finally {
    await sql.end();
  }
});
