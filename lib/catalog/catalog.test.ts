import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createMigratedCatalog, createTestDatabase, projectRoot } from '../../test/helpers';
import { migrate } from './migrate';
import type { PrismaClient } from '../generated/prisma/client';

describe('catalog schema and migrations', () => {
  let db: PrismaClient;
  let url: string;
  beforeAll(async () => {
    ({ db, url } = await createMigratedCatalog());
  });
  afterAll(async () => db?.$disconnect());

  it('records every migration in _prisma_migrations with its sha256 checksum, once', async () => {
    const again = await migrate(url, path.join(projectRoot, 'prisma', 'migrations'));
    expect(again.applied).toEqual([]);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query('SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations"');
    await client.end();
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.checksum).toMatch(/^[0-9a-f]{64}$/);
      expect(row.finished_at).not.toBeNull();
      expect(row.applied_steps_count).toBe(1);
    }
  });

  it('serialises concurrent migration runners', async () => {
    const fresh = await createTestDatabase();
    const dir = path.join(projectRoot, 'prisma', 'migrations');
    const results = await Promise.all([migrate(fresh, dir), migrate(fresh, dir), migrate(fresh, dir)]);
    expect(results.map((r) => r.applied.length).sort()).toEqual([0, 0, results.flatMap((r) => r.applied).length]);
  });

  it('exercises every model through the client', async () => {
    const source = await db.source.create({ data: { name: 'lab', type: 'libvirt', path: '/srv/lab' } });
    const vm = await db.vm.create({ data: { sourceId: source.id, name: 'web1', uuid: 'u1', configPath: '/srv/lab/web1.xml' } });
    const disk = await db.disk.create({ data: { sourceId: source.id, identifier: 'path:base.qcow2', path: '/srv/lab/base.qcow2', format: 'qcow2', common: true } });
    await db.vmDisk.create({ data: { vmId: vm.id, diskId: disk.id, via: 'parent' } });
    const digest = 'a'.repeat(64);
    await db.storedDisk.create({ data: { digest, format: 'qcow2', logicalBytes: 5n * 2n ** 40n, storedBytes: 123n, createdAt: new Date() } });
    await db.diskVersion.create({ data: { diskId: disk.id, versionToken: 'v1', digest } });
    await db.diskSet.create({ data: { id: 'set1', sourceId: source.id } });
    await db.diskSetEntry.create({
      data: { diskSetId: 'set1', position: 0, diskId: disk.id, digest, via: 'parent', path: disk.path, versionToken: 'v1', common: true, logicalBytes: 1n },
    });
    await db.backupImage.create({ data: { id: 'b1', vmId: vm.id, createdAt: new Date(), logicalBytes: 1n, bytesRead: 1n, bytesWritten: 1n, bytesReferenced: 0n, diskSetId: 'set1' } });
    await db.imageDiskWork.create({ data: { backupImageId: 'b1', position: 0, action: 'stored', bytesRead: 1n, bytesWritten: 1n } });
    const loaded = await db.vm.findUniqueOrThrow({
      where: { sourceId_name: { sourceId: source.id, name: 'web1' } },
      include: { disks: { include: { disk: { include: { versions: { include: { storedDisk: true } } } } } }, backups: { include: { diskSet: { include: { entries: true } }, diskWork: true } } },
    });
    expect(loaded.disks[0].disk.versions[0].storedDisk.logicalBytes).toBe(5n * 2n ** 40n);
    expect(loaded.backups[0].diskSet?.entries[0].digest).toBe(digest);
    expect(loaded.backups[0].diskWork[0].action).toBe('stored');
    // the view of references joins the three
    expect(await db.$queryRawUnsafe('SELECT "backupImageId", "action", "bytesRead"::int AS "bytesRead" FROM "DiskReference"')).toEqual([{ backupImageId: 'b1', action: 'stored', bytesRead: 1 }]);
    await expect(db.source.create({ data: { name: 'lab', type: 'vmware', path: '/x' } })).rejects.toMatchObject({ code: 'P2002' });
    // a stored disk or a disk a set names cannot be deleted alone; removing a source cascades to its index, sets included
    await expect(db.storedDisk.delete({ where: { digest } })).rejects.toBeTruthy();
    await expect(db.disk.delete({ where: { id: disk.id } })).rejects.toBeTruthy();
    await db.source.delete({ where: { id: source.id } });
    expect(await db.vm.count()).toBe(0);
    expect(await db.diskSet.count()).toBe(0);
    expect(await db.diskSetEntry.count()).toBe(0);
    await db.storedDisk.delete({ where: { digest } });
  });

  it('carries the references recorded before disk sets over into sets, read back by the view as they were', async () => {
    // A catalog at the migration before disk sets, with references as that schema held them.
    const all = path.join(projectRoot, 'prisma', 'migrations');
    const before = await fs.mkdtemp(path.join(os.tmpdir(), 'vmdedup-migrations-'));
    for (const name of await fs.readdir(all)) if (name < '20261202100000') await fs.cp(path.join(all, name), path.join(before, name), { recursive: true });
    const fresh = await createTestDatabase();
    await migrate(fresh, before);
    const client = new pg.Client({ connectionString: fresh });
    await client.connect();
    try {
      await client.query(`
        INSERT INTO "Source" ("id", "name", "type", "path") VALUES ('s', 'lab', 'libvirt', '/lab');
        INSERT INTO "Vm" ("id", "sourceId", "name", "configPath") VALUES ('v1', 's', 'web1', '/lab/web1.xml'), ('v2', 's', 'web2', '/lab/web2.xml');
        INSERT INTO "Disk" ("id", "sourceId", "identifier", "path", "format") VALUES ('gold', 's', 'path:gold', '/lab/gold', 'qcow2'), ('o1', 's', 'path:o1', '/lab/o1', 'qcow2');
        INSERT INTO "StoredDisk" ("digest", "format", "logicalBytes", "storedBytes", "createdAt") VALUES ('dg', 'qcow2', 10, 5, now()), ('do', 'qcow2', 3, 2, now());
        INSERT INTO "BackupImage" ("id", "vmId", "createdAt", "logicalBytes", "bytesRead", "bytesWritten", "bytesReferenced")
          VALUES ('i1', 'v1', now(), 13, 13, 7, 0), ('i2', 'v1', now(), 13, 0, 0, 13), ('i3', 'v2', now(), 10, 0, 0, 10), ('i4', 'v2', now(), 0, 0, 0, 0);
        INSERT INTO "DiskReference" ("id", "backupImageId", "diskId", "digest", "via", "slot", "target", "path", "versionToken", "parentPointer", "parentPath", "parentVersion", "common", "action", "logicalBytes", "bytesRead", "bytesWritten") VALUES
          ('r1', 'i1', 'o1', 'do', 'attached', 'vda', 'o1', '/lab/o1', 't1', 'gold', '/lab/gold', 'tg', false, 'stored', 3, 3, 2),
          ('r2', 'i1', 'gold', 'dg', 'parent', NULL, NULL, '/lab/gold', 'tg', NULL, NULL, NULL, true, 'stored', 10, 10, 5),
          ('r3', 'i2', 'o1', 'do', 'attached', 'vda', 'o1', '/lab/o1', 't1', 'gold', '/lab/gold', 'tg', false, 'referenced', 3, 0, 0),
          ('r4', 'i2', 'gold', 'dg', 'parent', NULL, NULL, '/lab/gold', 'tg', NULL, NULL, NULL, true, 'referenced', 10, 0, 0),
          ('r5', 'i3', 'gold', 'dg', 'attached', 'vda', 'gold', '/lab/gold', 'tg', NULL, NULL, NULL, true, 'referenced', 10, 0, 0);`);
      const columns = '"backupImageId", "diskId", "digest", "via", "slot", "target", "path", "versionToken", "parentPointer", "parentPath", "parentVersion", "common", "action", "logicalBytes"::int, "bytesRead"::int, "bytesWritten"::int';
      const order = 'ORDER BY "backupImageId", "via", "path"';
      const old = (await client.query(`SELECT ${columns} FROM "DiskReference" ${order}`)).rows;
      await migrate(fresh, all);
      expect((await client.query(`SELECT ${columns} FROM "DiskReference" ${order}`)).rows).toEqual(old);
      // i1 and i2 name the same disks: one set; i3 another; i4 none.
      const sets = (await client.query('SELECT "id", "diskSetId" FROM "BackupImage" ORDER BY "id"')).rows;
      expect(sets[0].diskSetId).toBe(sets[1].diskSetId);
      expect(new Set(sets.map((r) => r.diskSetId)).size).toBe(3);
      expect(sets[3].diskSetId).toBeNull();
      expect((await client.query('SELECT count(*)::int AS n FROM "ImageDiskWork"')).rows).toEqual([{ n: 2 }]);
    } finally {
      await client.end();
      await fs.rm(before, { recursive: true, force: true });
    }
  });

  it('records the one repository the catalog indexes', async () => {
    await db.catalogRepository.create({ data: { repositoryId: 'r1', location: '/backup/repository' } });
    await expect(db.catalogRepository.create({ data: { repositoryId: 'r2', location: '/elsewhere' } })).rejects.toMatchObject({ code: 'P2002' });
    const row = await db.catalogRepository.findUniqueOrThrow({ where: { slot: 'default' } });
    expect(row).toMatchObject({ repositoryId: 'r1', location: '/backup/repository' });
    expect(row.recordedAt).toBeInstanceOf(Date);
    await db.catalogRepository.delete({ where: { slot: 'default' } });
  });

  it('exercises users, jobs and the append-only audit log', async () => {
    const user = await db.user.create({ data: { username: 'ana', email: 'ana@example.org', role: 'operator', passwordHash: 'x' } });
    await expect(db.user.create({ data: { username: 'ana', role: 'viewer' } })).rejects.toMatchObject({ code: 'P2002' });
    await db.user.update({ where: { id: user.id }, data: { sessionVersion: { increment: 1 }, lockedUntil: new Date() } });
    // Second factor and single sign-on: one user per (issuer, subject); revoked sessions by id.
    await db.user.update({ where: { id: user.id }, data: { totpSecret: 'v1:a:b:c', totpEnabledAt: new Date(), totpLastStep: 59_870_748, oidcIssuer: 'https://idp', oidcSubject: 's1' } });
    await expect(db.user.create({ data: { username: 'bob', role: 'viewer', oidcIssuer: 'https://idp', oidcSubject: 's1' } })).rejects.toMatchObject({ code: 'P2002' });
    await db.user.create({ data: { username: 'bob', role: 'viewer', oidcIssuer: 'https://other-idp', oidcSubject: 's1' } });
    expect(await db.user.findUniqueOrThrow({ where: { oidcIssuer_oidcSubject: { oidcIssuer: 'https://idp', oidcSubject: 's1' } } })).toMatchObject({ username: 'ana', totpLastStep: 59_870_748 });
    await db.revokedSession.create({ data: { id: 'sid-1', expiresAt: new Date(Date.now() + 1000) } });
    expect((await db.revokedSession.findUniqueOrThrow({ where: { id: 'sid-1' } })).revokedAt).toBeInstanceOf(Date);
    const job = await db.job.create({ data: { kind: 'backup', target: { vm: 'web1' }, label: 'Back up web1', requestedBy: 'ana' } });
    await db.job.update({ where: { id: job.id }, data: { state: 'running', bytesDone: 2n ** 40n, bytesTotal: 2n ** 41n, bytesPerSecond: 1.5e8 } });
    expect((await db.job.findUniqueOrThrow({ where: { id: job.id } })).bytesTotal).toBe(2n ** 41n);
    const event = await db.auditEvent.create({ data: { actor: 'ana', action: 'backup.request', target: 'web1', detail: { jobId: job.id } } });
    expect(event.id).toBeTypeOf('bigint');
    await expect(db.auditEvent.update({ where: { id: event.id }, data: { actor: 'eve' } })).rejects.toThrow(/append-only/);
    await expect(db.auditEvent.deleteMany({})).rejects.toThrow(/append-only/);
    expect(await db.auditEvent.count()).toBe(1);
  });
});
