/**
 * Restores requested in the browser, at the service level with a real worker process: confirmation by
 * fingerprint, approval by a second person (never the requester), expiry, execution, and a state change
 * between approval and execution that stops the restore before anything is written.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failStaleJobs } from '../lib/services/jobs/fail-stale-jobs';
import { withdrawRestore } from '../lib/services/restores/withdraw-restore';
import { runRestoreRequest } from '../lib/services/restores/run-restore-request';
import { decideRestore } from '../lib/services/restores/decide-restore';
import { getRestoreRequest } from '../lib/services/restores/get-restore-request';
import { listRestoreRequests } from '../lib/services/restores/list-restore-requests';
import { localRestorePlanner } from '../lib/services/restores/local-restore-planner';
import { planRestoreRequest } from '../lib/services/restores/plan-restore-request';
import { requestRestore } from '../lib/services/restores/request-restore';
import { setApprovalPolicy } from '../lib/services/restores/set-approval-policy';
import { type Fleet, buildFleet, overwrite } from '../lib/demo/fleet';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import { Repository } from '../lib/engine/repository/repository';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { JOB_QUEUE } from '../lib/jobs/queue';
import { cli, createMigratedCatalog, projectRoot, tempDir } from './helpers';

describe('restore requests (approval, execution)', () => {
  let db: PrismaClient;
  let sql: pg.Pool;
  let queue: PgBoss;
  let repo: Repository;
  let fleet: Fleet;
  let env: Record<string, string>;
  let home: string;
  let worker: ChildProcess | undefined;
  let backupId: string;
  let previousHome: string | undefined;
  const config = () => path.join(fleet.libvirtDir, 'images', 'site-config.raw');

  const startWorker = () => { worker = spawn(process.execPath, [path.join(projectRoot, 'bin', 'worker.mjs')], { env: { ...process.env, ...env }, stdio: 'ignore' }); };
  const stopWorker = async () => {
    if (!worker) return;
    const exited = new Promise((resolve) => worker!.once('exit', resolve));
    worker.kill('SIGTERM');
    await exited;
    worker = undefined;
  };
  const until = async (what: string, probe: () => Promise<boolean>) => {
    for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) if (await probe()) return;
    throw new Error(`timed out waiting for ${what}`);
  };
  const input = (dir: string) => ({ vm: 'vm01', backupId, target: { kind: 'folder' as const, dir }, policy: 'no-overwrite' as const, choice: 'reattach' as const });

  beforeAll(async () => {
    home = await tempDir();
    const catalog = await createMigratedCatalog();
    db = catalog.db;
    sql = new pg.Pool({ connectionString: catalog.url, max: 2 });
    env = { VMDEDUP_HOME: home, DATABASE_URL: catalog.url };
    // Browser restores go under VMDEDUP_HOME/restores by default: this process plans with the worker's home.
    previousHome = process.env.VMDEDUP_HOME;
    process.env.VMDEDUP_HOME = home;
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 3, baseMiB: 8, configDiskMiB: 2, privateDiskMiB: 3, vmwareVms: 0 });
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(env, 'backup')).code).toBe(0);
    backupId = (JSON.parse((await cli(env, 'backups', '--vm', 'vm01', '--json')).stdout) as { backups: { backupId: string }[] }).backups[0].backupId;
    repo = await Repository.open(new FsBlobStore(path.join(home, 'repository')));
    queue = new PgBoss({ connectionString: catalog.url, schema: 'pgboss', supervise: false, schedule: false });
    await queue.start();
    await queue.createQueue(JOB_QUEUE);
    // The shared configuration disk is modified after the backup: drift, so approval is needed.
    await overwrite(config(), 0, 4096, 9);
  });

  afterAll(async () => {
    if (previousHome === undefined) delete process.env.VMDEDUP_HOME;
    else process.env.VMDEDUP_HOME = previousHome;
    worker?.kill('SIGKILL');
    await queue?.stop({ graceful: false });
    await sql?.end();
    await db?.$disconnect();
  });

  it('a drifted restore waits for another approver, then runs and writes verified files', async () => {
    const target = path.join(home, 'restores', 'restore-a');
    const plan = await planRestoreRequest(db, sql, repo, input(target));
    expect(plan.status).toBe('needs-confirmation');
    expect(plan.drift.map((d) => d.kind)).toEqual(['modified']);
    expect(plan.message).toMatch(/site-config\.raw .*used by vm02 and vm03.* was modified after this backup/);
    expect(plan.approvalReasons).toEqual(['a common disk drifted since the backup']);
    expect(plan.confirmation).toMatch(/^Restore vm01 from its backup .* under policy no-overwrite, choice reattach: /);

    // A stale fingerprint (the user saw another plan) is refused.
    await expect(requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(target), fingerprint: '0'.repeat(64), confirmed: true } })).rejects.toThrow(/live state changed since you reviewed/);
    const request = await requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(target), fingerprint: plan.fingerprint, confirmed: true } });
    expect(request.status).toBe('awaiting-approval');
    await expect(decideRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', decision: { requestId: request.id, approve: true, note: '' } })).rejects.toThrow(/cannot approve or reject your own/);

    startWorker();
    const approved = await decideRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'april', decision: { requestId: request.id, approve: true, note: 'checked with the web team' } });
    expect(approved.status).toBe('approved');
    await until('the restore to finish', async () => ['restored', 'failed', 'changed'].includes((await getRestoreRequest(db, request.id)).status));
    const done = await getRestoreRequest(db, request.id);
    expect(done.status, done.error ?? '').toBe('restored');
    const restored = await fs.readFile(path.join(target, 'images', 'vm01-data.raw'));
    expect(restored.equals(await fs.readFile(path.join(fleet.libvirtDir, 'images', 'vm01-data.raw')))).toBe(true);
    expect(await fs.readFile(path.join(target, 'vm01.xml'), 'utf8')).toContain(`file='${await fs.realpath(config())}'`);
    const actions = (await db.auditEvent.findMany({ where: { detail: { path: ['requestId'], equals: request.id } }, orderBy: { id: 'asc' } })).map((e) => `${e.actor}:${e.action}`);
    // The refused self-approval is on record too, and the queueing of the restore names the request.
    expect(actions).toEqual(['olga:restore.request', 'olga:denied', 'april:restore.approve', 'april:restore.queue', 'worker:restore.finished']);
  });

  it('stops before writing when the live state changes between approval and execution', async () => {
    await stopWorker();
    const target = path.join(home, 'restores', 'restore-b');
    const plan = await planRestoreRequest(db, sql, repo, input(target));
    const request = await requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(target), fingerprint: plan.fingerprint, confirmed: true } });
    await decideRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'april', decision: { requestId: request.id, approve: true, note: '' } });
    // After the approval, before a worker takes the job, another VM's config stops using the shared disk.
    const vm02 = path.join(fleet.libvirtDir, 'vm02.xml');
    const original = await fs.readFile(vm02, 'utf8');
    await fs.writeFile(vm02, original.replace(/<disk type='file' device='disk'>\s*<driver name='qemu' type='raw'\/>\s*<source file='images\/site-config.raw'\/>[\s\S]*?<\/disk>/, ''));
    try {
      expect(await fs.readFile(vm02, 'utf8')).not.toContain('site-config.raw');
      startWorker();
      await until('the restore to stop', async () => ['restored', 'failed', 'changed'].includes((await getRestoreRequest(db, request.id)).status));
      const stopped = await getRestoreRequest(db, request.id);
      expect(stopped.status).toBe('changed');
      expect(stopped.error).toMatch(/live state changed since this restore was confirmed; nothing was written/);
      await expect(fs.access(target)).rejects.toThrow();
    } finally {
      await fs.writeFile(vm02, original);
    }
  });

  it('an approval of a plan the live state has left ends the request as changed, with no job; a requester withdraws their own', async () => {
    const target = path.join(home, 'restores', 'restore-w');
    const plan = await planRestoreRequest(db, sql, repo, input(target));
    const request = await requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(target), fingerprint: plan.fingerprint, confirmed: true } });
    const vm02 = path.join(fleet.libvirtDir, 'vm02.xml');
    const original = await fs.readFile(vm02, 'utf8');
    await fs.writeFile(vm02, original.replace(/<disk type='file' device='disk'>\s*<driver name='qemu' type='raw'\/>\s*<source file='images\/site-config.raw'\/>[\s\S]*?<\/disk>/, ''));
    try {
      const decided = await decideRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'april', decision: { requestId: request.id, approve: true, note: '' } });
      expect(decided.status).toBe('changed');
      expect(decided.error).toMatch(/live state changed since this restore was confirmed; nothing was written/);
      expect((await db.restoreRequest.findUniqueOrThrow({ where: { id: request.id } })).jobId).toBeNull();
    } finally {
      await fs.writeFile(vm02, original);
    }
    await expect(fs.access(target)).rejects.toThrow();

    const second = await requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(target), fingerprint: plan.fingerprint, confirmed: true } });
    await expect(withdrawRestore(db, { actor: 'april', requestId: second.id })).rejects.toThrow(/Only olga, who asked for this restore, can withdraw it/);
    expect((await withdrawRestore(db, { actor: 'olga', requestId: second.id })).status).toBe('withdrawn');
    await expect(withdrawRestore(db, { actor: 'olga', requestId: second.id })).rejects.toThrow(/is withdrawn: it can no longer be withdrawn/);
    await expect(decideRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'april', decision: { requestId: second.id, approve: true, note: '' } })).rejects.toThrow(/is withdrawn: there is nothing to decide/);
    const audit = (await db.auditEvent.findMany({ where: { action: { in: ['restore.withdraw', 'denied'] } }, orderBy: { id: 'desc' }, take: 2 })).map((e) => `${e.actor}:${e.action}`);
    expect(audit).toEqual(['olga:restore.withdraw', 'april:denied']);
  });

  it('expires requests nobody decided on, and an approval policy without reasons queues at once', async () => {
    const target = path.join(home, 'restores', 'restore-c');
    const plan = await planRestoreRequest(db, sql, repo, input(target));
    const request = await requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(target), fingerprint: plan.fingerprint, confirmed: true } });
    await db.restoreRequest.update({ where: { id: request.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    expect((await listRestoreRequests(db)).find((r) => r.id === request.id)!.status).toBe('expired');
    await expect(decideRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'april', decision: { requestId: request.id, approve: true, note: '' } })).rejects.toThrow(/is expired/);

    // Restores from the browser go only under the restore roots (default VMDEDUP_HOME/restores), as resolved.
    await expect(planRestoreRequest(db, sql, repo, input(path.join(home, 'elsewhere')))).rejects.toThrow(/may write only under .*restores/);
    await expect(planRestoreRequest(db, sql, repo, input('/etc/cron.d/x'))).rejects.toThrow(/may write only under/);
    const outside = await tempDir();
    await fs.mkdir(path.join(home, 'restores'), { recursive: true });
    await fs.symlink(outside, path.join(home, 'restores', 'escape'));
    await expect(planRestoreRequest(db, sql, repo, input(path.join(home, 'restores', 'escape', 'vm01')))).rejects.toThrow(/may write only under .*leads out of them through a symlink/);
    await expect(planRestoreRequest(db, sql, repo, input(path.join(home, 'restores', 'escape', '..', '..', 'x')))).rejects.toThrow(/may write only under/);
    process.env.VMDEDUP_RESTORE_ROOTS = path.join(home, 'allowed');
    try {
      await expect(planRestoreRequest(db, sql, repo, input(path.join(home, 'restores', 'vm01')))).rejects.toThrow(/may write only under .*allowed/);
      expect((await planRestoreRequest(db, sql, repo, input(path.join(home, 'allowed', 'vm01')))).vm).toBe('vm01');
    } finally {
      delete process.env.VMDEDUP_RESTORE_ROOTS;
    }

    await setApprovalPolicy(db, { actor: 'admin', policy: { inPlace: true, overwriteCommon: true, drift: false, allowOverwrite: true, expiryHours: 24 } });
    const unreviewed = await planRestoreRequest(db, sql, repo, input(path.join(home, 'restores', 'restore-d')));
    expect(unreviewed.approvalReasons).toEqual([]);
    const direct = await requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(path.join(home, 'restores', 'restore-d')), fingerprint: unreviewed.fingerprint, confirmed: true } });
    expect(direct.status).toBe('approved');
    expect(direct.jobId).toBeTruthy();
  });

  it('a restore whose worker died ends failed together with its job, never left running', async () => {
    await stopWorker();
    const target = path.join(home, 'restores', 'restore-e');
    const plan = await planRestoreRequest(db, sql, repo, input(target));
    expect(plan.approvalReasons).toEqual([]); // the previous test's policy: queued at once
    const request = await requestRestore(db, localRestorePlanner(db, sql, repo), queue, { actor: 'olga', request: { ...input(target), fingerprint: plan.fingerprint, confirmed: true } });
    // What a worker killed mid-restore leaves: the request running, its job running without a heartbeat.
    await db.restoreRequest.update({ where: { id: request.id }, data: { status: 'running' } });
    await db.job.update({ where: { id: request.jobId! }, data: { state: 'running', startedAt: new Date(), heartbeatAt: new Date(Date.now() - 3_600_000) } });
    expect((await failStaleJobs(db)).map((job) => job.id)).toContain(request.jobId);
    const ended = await getRestoreRequest(db, request.id);
    expect(ended.status).toBe('failed');
    expect(ended.error).toMatch(/the worker stopped during the job/);
    expect((await db.job.findUniqueOrThrow({ where: { id: request.jobId! } })).state).toBe('failed');
  });

  it('the worker refuses an approved request that leads outside the restore roots (a row the web server forged)', async () => {
    const outside = await tempDir();
    await fs.symlink(outside, path.join(home, 'restores', 'to-outside'));
    for (const dir of [path.join(outside, 'vm01'), path.join(home, 'restores', 'to-outside', 'vm01')]) {
      const plan = await planRestoreRequest(db, sql, repo, input(path.join(home, 'restores', 'restore-f')));
      const row = await db.restoreRequest.create({
        data: {
          vm: 'vm01', source: 'kvm', backupId, target: { kind: 'folder', dir }, policy: 'no-overwrite', choice: 'reattach', status: 'approved', requestedBy: 'mallory',
          expiresAt: new Date(Date.now() + 3_600_000), plan: {}, fingerprint: plan.fingerprint, confirmation: '', approvalReasons: [],
        },
      });
      await expect(runRestoreRequest(db, sql, repo, { requestId: row.id })).rejects.toThrow(/may write only under/);
      expect((await db.restoreRequest.findUniqueOrThrow({ where: { id: row.id } })).status).toBe('approved');
    }
    expect(await fs.readdir(outside)).toEqual([]);
  });

  it('an in-place restore goes only where the VM lives: a source re-pointed elsewhere after the backup is refused (a row the web server wrote)', async () => {
    // The app role may rewrite a source's folder (as may an admin in the browser): after the backup, the source
    // 'kvm' names another folder (think /etc). In place there, the VM's backed-up files would be written as root
    // at <that folder>/<their backed-up relative paths>, with whatever content they had at the backup.
    const elsewhere = await tempDir();
    const inPlace = { vm: 'vm01', backupId, target: { kind: 'in-place' as const }, policy: 'no-overwrite' as const, choice: 'copy' as const };
    await sql.query('UPDATE "Source" SET "path" = $1 WHERE "name" = $2', [elsewhere, 'kvm']);
    try {
      await expect(planRestoreRequest(db, sql, repo, inPlace)).rejects.toThrow(/in place only where the VM lived at the backup/);
      // The fingerprint of that plan as the CLI (root, unconfined) makes it, on a forged approved row.
      const { planVmRestore } = await import('../lib/services/restores/plan-vm-restore');
      const plan = await planVmRestore(sql, repo, inPlace);
      expect(plan.root).toBe(elsewhere);
      const row = await db.restoreRequest.create({
        data: {
          vm: 'vm01', source: 'kvm', backupId, target: inPlace.target, policy: inPlace.policy, choice: inPlace.choice, status: 'approved', requestedBy: 'mallory',
          expiresAt: new Date(Date.now() + 3_600_000), plan: {}, fingerprint: plan.fingerprint, confirmation: '', approvalReasons: [],
        },
      });
      await expect(runRestoreRequest(db, sql, repo, { requestId: row.id })).rejects.toThrow(/in place only where the VM lived at the backup/);
      expect(await fs.readdir(elsewhere)).toEqual([]);
    } finally {
      await sql.query('UPDATE "Source" SET "path" = $1 WHERE "name" = $2', [fleet.libvirtDir, 'kvm']);
    }
  });
});
