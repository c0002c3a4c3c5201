/**
 * Alerts to a real webhook (a local HTTP server) and real e-mail (a local SMTP server, through nodemailer): the test
 * button, a failed scheduled run and a missed one (a real worker process), retries with back-off told once after the
 * last try, and the RPO watch.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFleet } from '../lib/demo/fleet';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { watchRpo } from '../lib/services/jobs/schedules';
import { cli, createMigratedCatalog, projectRoot, tempDir } from './helpers';

type Posted = { event: string; severity: string; subject: string; message: string; details?: { vms?: string[] } };

describe('alerts', () => {
  let db: PrismaClient;
  let sql: pg.Pool;
  let env: Record<string, string>;
  const posted: Posted[] = [];
  const mails: string[] = [];
  let web: http.Server;
  let smtp: SMTPServer;
  const workers: ChildProcess[] = [];

  beforeAll(async () => {
    web = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        posted.push(JSON.parse(body) as Posted);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    smtp = new SMTPServer({
      authOptional: true, disabledCommands: ['STARTTLS'], logger: false,
      onData(stream, _session, done) {
        let text = '';
        stream.on('data', (d) => { text += d; });
        stream.on('end', () => { mails.push(text); done(); });
      },
    });
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    const home = await tempDir();
    const catalog = await createMigratedCatalog();
    db = catalog.db;
    sql = new pg.Pool({ connectionString: catalog.url, max: 2 });
    env = { VMDEDUP_HOME: home, DATABASE_URL: catalog.url, VMDEDUP_SMTP_URL: `smtp://127.0.0.1:${(smtp.server.address() as AddressInfo).port}`, VMDEDUP_SMTP_FROM: 'backup@example.com' };
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 2, baseMiB: 8, configDiskMiB: 1, privateDiskMiB: 4, vmwareVms: 0 });
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
  });

  afterAll(async () => {
    for (const worker of workers) worker.kill('SIGKILL');
    web?.close();
    smtp?.close();
    await sql?.end();
    await db?.$disconnect();
  });

  const hook = () => `http://127.0.0.1:${(web.address() as AddressInfo).port}/hook`;

  it('refuses bad channels; the test alert reaches the webhook and the mailbox, and names a channel that fails', async () => {
    expect((await cli(env, 'alert', 'add', 'webhook', 'ftp://example.com/x')).stderr).toMatch(/http or https only/);
    expect((await cli(env, 'alert', 'add', 'email', 'not-an-address')).stderr).toMatch(/not an e-mail address/);
    expect((await cli(env, 'alert', 'add', 'pager', 'x')).code).toBe(2);
    expect((await cli(env, 'alert', 'add', 'webhook', hook())).code).toBe(0);
    expect((await cli(env, 'alert', 'add', 'email', 'ops@example.com')).code).toBe(0);
    expect((await cli(env, 'alert', 'add', 'webhook', 'http://127.0.0.1:1/closed')).code).toBe(0);
    const test = await cli(env, 'alert', 'test');
    expect(test.code).toBe(1);
    expect(test.stdout).toMatch(/^sent {2}webhook http:\/\/127\.0\.0\.1:\d+\/hook$/m);
    expect(test.stdout).toMatch(/^sent {2}email ops@example\.com$/m);
    expect(test.stdout).toMatch(/^FAILED {2}webhook http:\/\/127\.0\.0\.1:1\/closed: /m);
    expect(posted.at(-1)).toMatchObject({ event: 'test', severity: 'info', subject: 'test alert' });
    expect(mails.at(-1)).toMatch(/Subject: \[vmdedup\] info: test alert/);
    expect(mails.at(-1)).toMatch(/To: ops@example\.com/);
    const { channels } = JSON.parse((await cli(env, 'alert', 'list', '--json')).stdout) as { channels: { id: string; target: string }[] };
    expect((await cli(env, 'alert', 'remove', channels.find((c) => c.target.endsWith('/closed'))!.id)).code).toBe(0);
    expect((await cli(env, 'alert', 'test')).code).toBe(0);
  });

  it('a scheduled run that was missed and then fails is told: missed, then failed', async () => {
    posted.length = 0;
    expect((await cli(env, 'job', 'add', 'nothing-matches', '--schedule', '* * * * *', '--time-zone', 'UTC', '--vm', 'no-such-vm-*')).code).toBe(0);
    await db.scheduledJob.update({ where: { name: 'nothing-matches' }, data: { scheduledAt: new Date(Date.now() - 10 * 60_000) } });
    const worker = spawn(process.execPath, [path.join(projectRoot, 'bin', 'worker.mjs')], { env: { ...process.env, ...env, VMDEDUP_SCHEDULER_TICK_MS: '500' }, stdio: 'ignore' });
    workers.push(worker);
    for (const end = Date.now() + 60_000; Date.now() < end && !posted.some((p) => p.event === 'job.failed'); ) await new Promise((r) => setTimeout(r, 200));
    worker.kill('SIGTERM');
    await new Promise((resolve) => worker.once('exit', resolve));
    expect(posted.map((p) => p.event)).toEqual(expect.arrayContaining(['job.missed', 'job.failed']));
    expect(posted.find((p) => p.event === 'job.failed')).toMatchObject({ severity: 'error', subject: 'Backup job nothing-matches: failed', message: expect.stringMatching(/no VM matches 'no-such-vm-\*'/) });
    expect(mails.some((m) => /Subject: \[vmdedup\] error: Backup job nothing-matches: failed/.test(m))).toBe(true);
    await cli(env, 'job', 'remove', 'nothing-matches');
  }, 90_000);

  it('the RPO watch tells once per VM that falls behind, and again only after it caught up and fell behind anew', async () => {
    posted.length = 0;
    expect((await cli(env, 'backup')).code).toBe(0);
    expect((await cli(env, 'job', 'add', 'nightly', '--schedule', '0 2 * * *', '--time-zone', 'UTC', '--source', 'kvm', '--rpo-hours', '24')).code).toBe(0);
    const backupAt = Date.now();
    const hours = (h: number) => new Date(backupAt + h * 3_600_000);
    expect(await watchRpo(db, sql, hours(1))).toEqual([]);
    expect(await watchRpo(db, sql, hours(25))).toEqual([{ job: 'nightly', behind: ['kvm/vm01', 'kvm/vm02'] }]);
    expect(posted.at(-1)).toMatchObject({ event: 'rpo.exceeded', subject: 'nightly: 2 VMs without a good backup for 24 h', details: { vms: ['kvm/vm01', 'kvm/vm02'] } });
    expect(await watchRpo(db, sql, hours(26))).toEqual([]); // still behind: told already
    expect(await watchRpo(db, sql, hours(2))).toEqual([]); // caught up (the clock as if a backup came)
    expect(await watchRpo(db, sql, hours(30))).toEqual([{ job: 'nightly', behind: ['kvm/vm01', 'kvm/vm02'] }]);
    // A backup verify found damaged is no good backup.
    await db.backupImage.updateMany({ where: { vm: { name: 'vm02' } }, data: { verifyStatus: 'failed' } });
    await watchRpo(db, sql, hours(1));
    expect(await watchRpo(db, sql, hours(1.5))).toEqual([]);
    const { rows } = await sql.query<{ key: string }>('SELECT "key" FROM "AlertRaised" ORDER BY "key"');
    expect(rows.map((r) => r.key)).toEqual(['rpo:nightly:kvm/vm02']);
  }, 60_000);
  it('a failed scheduled run is tried again with back-off, and told once, after its last try', async () => {
    posted.length = 0;
    const gone = path.join(env.VMDEDUP_HOME, 'unmounted');
    await fs.mkdir(gone);
    expect((await cli(env, 'source', 'add', 'nas', '--type', 'libvirt', '--path', gone)).code).toBe(0);
    await fs.rm(gone, { recursive: true });
    // Yearly, last fired long ago: it fires once now, and its retries come 0.6 s and then 1.2 s after each failure.
    expect((await cli(env, 'job', 'add', 'flaky', '--schedule', '0 0 1 1 *', '--time-zone', 'UTC', '--source', 'nas', '--retries', '2', '--retry-delay', '0.01')).code).toBe(0);
    expect((await cli(env, 'job', 'add', 'bad', '--schedule', '0 0 1 1 *', '--retries', '11')).stderr).toMatch(/--retries must be a whole number from 0 to 10/);
    const job = await db.scheduledJob.update({ where: { name: 'flaky' }, data: { scheduledAt: new Date('2024-06-01T00:00:00Z') } });
    const worker = spawn(process.execPath, [path.join(projectRoot, 'bin', 'worker.mjs')], { env: { ...process.env, ...env, VMDEDUP_SCHEDULER_TICK_MS: '200' }, stdio: 'ignore' });
    workers.push(worker);
    const runs = () => db.job.findMany({ where: { scheduledJobId: job.id }, orderBy: { attempt: 'asc' } });
    for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
      const done = (await runs()).filter((r) => r.finishedAt);
      if (done.length === 3) break;
    }
    await new Promise((r) => setTimeout(r, 1500)); // no fourth try comes
    worker.kill('SIGTERM');
    await new Promise((resolve) => worker.once('exit', resolve));
    const all = await runs();
    expect(all.map((r) => [r.attempt, r.state, r.label])).toEqual([
      [1, 'failed', 'Backup job flaky'], [2, 'failed', 'Backup job flaky (retry 1 of 2)'], [3, 'failed', 'Backup job flaky (retry 2 of 2)'],
    ]);
    // Each retry came after its delay, doubling: 0.6 s, then 1.2 s after the failure before it.
    expect(all[1].createdAt.getTime() - all[0].finishedAt!.getTime()).toBeGreaterThanOrEqual(600);
    expect(all[2].createdAt.getTime() - all[1].finishedAt!.getTime()).toBeGreaterThanOrEqual(1200);
    expect(all.every((r) => r.retryAt === null)).toBe(true);
    // (The fire of 2025 it missed is told too, as job.missed.)
    const told = posted.filter((p) => p.subject.includes('flaky') && p.event !== 'job.missed');
    expect(told).toHaveLength(1);
    expect(told[0]).toMatchObject({ event: 'job.failed', subject: 'Backup job flaky (retry 2 of 2): failed', message: expect.stringMatching(/attempt 3: the last retry/) });
    await cli(env, 'job', 'remove', 'flaky');
  }, 90_000);
});
