import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
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
    await db.backupImage.create({ data: { id: 'b1', vmId: vm.id, createdAt: new Date(), logicalBytes: 1n, bytesRead: 1n, bytesWritten: 1n, bytesReferenced: 0n } });
    await db.diskReference.create({
      data: { backupImageId: 'b1', diskId: disk.id, digest, via: 'parent', path: disk.path, versionToken: 'v1', common: true, action: 'stored', logicalBytes: 1n, bytesRead: 1n, bytesWritten: 1n },
    });
    const loaded = await db.vm.findUniqueOrThrow({
      where: { sourceId_name: { sourceId: source.id, name: 'web1' } },
      include: { disks: { include: { disk: { include: { versions: { include: { storedDisk: true } } } } } }, backups: { include: { disks: true } } },
    });
    expect(loaded.disks[0].disk.versions[0].storedDisk.logicalBytes).toBe(5n * 2n ** 40n);
    expect(loaded.backups[0].disks[0].action).toBe('stored');
    await expect(db.source.create({ data: { name: 'lab', type: 'vmware', path: '/x' } })).rejects.toMatchObject({ code: 'P2002' });
    // a stored disk still referenced cannot be deleted (RESTRICT); removing a source cascades to its index
    await expect(db.storedDisk.delete({ where: { digest } })).rejects.toBeTruthy();
    await db.source.delete({ where: { id: source.id } });
    expect(await db.vm.count()).toBe(0);
    expect(await db.diskReference.count()).toBe(0);
    await db.storedDisk.delete({ where: { digest } });
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
