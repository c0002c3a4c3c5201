/**
 * What the dashboard says is overdue (the Overview's list, the VMs page's last good backup, verify state and next run),
 * against a real catalog at a fixed `now`: two sources with a VM of the same name, patterns that match some VMs and not
 * others, an RPO, verify results, a late job, a failed run and a disabled job that counts for nothing.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMigratedCatalog } from '../../../test/helpers';
import type { PrismaClient } from '../../generated/prisma/client';
import { watchRpo } from '../jobs/schedules';
import { listOverdue } from './list-overdue';
import { listVms } from './list-vms';

const now = new Date('2026-06-10T12:00:00Z'); // a Wednesday
const hoursAgo = (h: number) => new Date(now.getTime() - h * 3_600_000);

describe('overdue and per-VM schedule state', () => {
  let db: PrismaClient;
  let sql: pg.Pool;
  let kvm: string;
  let esx: string;
  let images = 0;

  const addVm = async (sourceId: string, name: string, seen = true) =>
    (await db.vm.create({ data: { sourceId, name, configPath: `/etc/${name}.xml`, lastSeenAt: seen ? hoursAgo(1) : null } })).id;
  const addBackup = (vmId: string, createdAt: Date, verify?: { status: 'ok' | 'failed'; at: Date; problems?: string[] }) => db.backupImage.create({
    data: {
      id: `img-${++images}`, vmId, createdAt, logicalBytes: 1, bytesRead: 1, bytesWritten: 1, bytesReferenced: 0,
      ...(verify ? { verifyStatus: verify.status, verifiedAt: verify.at, verifyProblems: verify.problems ?? [] } : {}),
    },
  });
  const addJob = (name: string, data: { kind?: string; source?: string | null; vmPatterns?: string[]; schedule: string; scheduledAt: Date; rpoHours?: number; verifyOutdatedAfterDays?: number; enabled?: boolean; lastRunJobId?: string }) =>
    db.scheduledJob.create({ data: { name, timeZone: 'UTC', ...data } });

  beforeAll(async () => {
    const catalog = await createMigratedCatalog();
    db = catalog.db;
    sql = new pg.Pool({ connectionString: catalog.url, max: 2 });
    kvm = (await db.source.create({ data: { name: 'kvm', type: 'libvirt', path: '/srv/kvm' } })).id;
    esx = (await db.source.create({ data: { name: 'esx', type: 'vmware', path: '/srv/esx' } })).id;
    // kvm/web1: backed up 2 h ago and verified; the nightly job covers it, next at 02:00 tomorrow.
    await addBackup(await addVm(kvm, 'web1'), hoursAgo(2), { status: 'ok', at: hoursAgo(1) });
    await addJob('nightly', { source: 'kvm', vmPatterns: ['web*'], schedule: '0 2 * * *', scheduledAt: new Date('2026-06-10T02:00:00Z'), rpoHours: 24 });
  });
  afterAll(async () => {
    await sql?.end();
    await db?.$disconnect();
  });

  it('says nothing is overdue when every VM is backed up in time by a job that fires', async () => {
    expect(await listOverdue(db, { sql, now })).toEqual([]);
    const [web1] = await listVms(db, { sql, now });
    expect(web1).toMatchObject({
      source: 'kvm', name: 'web1', lastGoodBackupAt: hoursAgo(2).toISOString(), failedVerifies: 0,
      verify: { state: 'ok', at: hoursAgo(1).toISOString() },
      nextRun: { at: '2026-06-11T02:00:00.000Z', job: 'nightly', overdue: false }, pastRpo: [],
    });
  });

  it('lists what is overdue, and the VMs page agrees, respecting sources, patterns and enabled', async () => {
    // kvm/web2: its newest backup failed verify, the good one before it is 50 h old (past the 24 h RPO).
    const web2 = await addVm(kvm, 'web2');
    await addBackup(web2, hoursAgo(50), { status: 'ok', at: hoursAgo(240) });
    await addBackup(web2, hoursAgo(30), { status: 'failed', at: hoursAgo(1), problems: ['chunk ab12 missing'] });
    // esx/web1: the same name as kvm/web1, in another source, never backed up; only the late esx job covers it.
    await addVm(esx, 'web1');
    // esx/app1: a backup never verified, of a source the verify job does not cover.
    await addBackup(await addVm(esx, 'app1'), hoursAgo(5));
    // kvm/db1: seen, no backup, no job covers it. kvm/db2: a backup never verified, not web*, its job just came due.
    await addVm(kvm, 'db1');
    await addBackup(await addVm(kvm, 'db2'), hoursAgo(3));
    // kvm/web-old: gone from its source (known from a backup only): no RPO for it.
    await addBackup(await addVm(kvm, 'web-old', false), hoursAgo(100));

    const run = await db.job.create({ data: { kind: 'backup', target: {}, label: 'Backup job nightly', state: 'partial', requestedBy: 'scheduler', message: '1 of 2 VMs failed', finishedAt: hoursAgo(10) } });
    await db.scheduledJob.update({ where: { name: 'nightly' }, data: { lastRunJobId: run.id } });
    // Due 2 h ago, never fired: no worker runs.
    await addJob('esx-hourly', { source: 'esx', schedule: '0 * * * *', scheduledAt: hoursAgo(3) });
    // Due 2 minutes ago: the worker may still be starting it (late for the VMs page, not yet missed for the Overview).
    await addJob('db-hourly', { source: 'kvm', vmPatterns: ['db2'], schedule: '58 * * * *', scheduledAt: hoursAgo(1) });
    await addJob('weekly', { kind: 'verify', source: 'kvm', vmPatterns: ['web*'], schedule: '0 3 * * 0', scheduledAt: hoursAgo(1), verifyOutdatedAfterDays: 7 });
    // Disabled: would make every VM past a 1 h RPO, late, failed and unverified, if it counted.
    const failed = await db.job.create({ data: { kind: 'backup', target: {}, label: 'Backup job off', state: 'failed', requestedBy: 'scheduler', error: 'boom', finishedAt: hoursAgo(1) } });
    await addJob('off', { schedule: '* * * * *', scheduledAt: hoursAgo(500), rpoHours: 1, enabled: false, lastRunJobId: failed.id });
    await addJob('off-verify', { kind: 'verify', schedule: '* * * * *', scheduledAt: hoursAgo(500), verifyOutdatedAfterDays: 1, enabled: false });

    const overdue = await listOverdue(db, { sql, now });
    expect(overdue.map(({ kind, subject }) => `${kind} ${subject}`)).toEqual([
      'rpo kvm/web2',
      'job-late backup job esx-hourly',
      'job-failed backup job nightly',
      'verify-outdated verify job weekly',
      'unprotected kvm/db1',
    ]);
    const byKind = Object.fromEntries(overdue.map((item) => [item.kind, item]));
    expect(byKind.rpo).toMatchObject({ vm: { source: 'kvm', name: 'web2' }, at: { label: 'last good backup', iso: hoursAgo(50).toISOString() } });
    expect(byKind.rpo.reason).toContain('24 h of job nightly');
    expect(byKind['job-late'].at).toEqual({ label: 'due', iso: hoursAgo(2).toISOString() });
    expect(byKind['job-failed'].reason).toBe('last run partial: 1 of 2 VMs failed');
    // kvm/web2's older image (verified 10 days ago) and kvm/web-old's (never): not esx/app1 (source), nor kvm/db2 (pattern).
    expect(byKind['verify-outdated'].reason).toBe('2 backups not verified within 7 days');
    expect(byKind.unprotected.reason).toContain('unprotected, no schedule');

    // The RPO watch sees the same VMs behind.
    expect(await watchRpo(db, sql, now)).toEqual([{ job: 'nightly', behind: ['kvm/web2'] }]);

    const vms = Object.fromEntries((await listVms(db, { sql, now })).map((vm) => [`${vm.source}/${vm.name}`, vm]));
    expect(vms['kvm/web1']).toMatchObject({ nextRun: { job: 'nightly', overdue: false }, pastRpo: [], verify: { state: 'ok' } });
    expect(vms['kvm/web2']).toMatchObject({
      lastGoodBackupAt: hoursAgo(50).toISOString(), failedVerifies: 1,
      verify: { state: 'failed', at: hoursAgo(1).toISOString(), problems: ['chunk ab12 missing'] },
      nextRun: { at: '2026-06-11T02:00:00.000Z', job: 'nightly', overdue: false }, pastRpo: [{ job: 'nightly', rpoHours: 24 }],
    });
    expect(vms['esx/web1']).toMatchObject({
      lastGoodBackupAt: null, verify: null, backups: 0,
      nextRun: { at: hoursAgo(2).toISOString(), job: 'esx-hourly', overdue: true }, pastRpo: [],
    });
    expect(vms['esx/app1']).toMatchObject({ verify: { state: 'unverified', at: null }, nextRun: { job: 'esx-hourly', overdue: true } });
    expect(vms['kvm/db1']).toMatchObject({ nextRun: null, pastRpo: [], verify: null });
    expect(vms['kvm/db2']).toMatchObject({ nextRun: { at: new Date('2026-06-10T11:58:00Z').toISOString(), job: 'db-hourly', overdue: true } });
    expect(vms['kvm/web-old']).toMatchObject({ lastGoodBackupAt: hoursAgo(100).toISOString(), nextRun: { job: 'nightly', overdue: false }, pastRpo: [] });
  });
});
