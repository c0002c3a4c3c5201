/**
 * Workers on several hosts (issue 14): two worker processes, each with its own VMDEDUP_HOME and serving only its own
 * source, share one PostgreSQL catalog and one S3 repository and run their jobs at the same time; work on a source
 * goes only to the workers serving it, work needing every source only to a worker serving every source, work on
 * the repository to any. The base image both hosts hold a copy of is stored once, and each host's VMs restore byte
 * for byte.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFleet, overwrite } from '../lib/demo/fleet';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { AppError } from '../lib/errors';
import { callWorker } from '../lib/jobs/worker-calls';
import { getJob } from '../lib/services/jobs/get-job';
import { requestBackup } from '../lib/services/jobs/request-backup';
import { queueJob } from '../lib/services/jobs/queue-job';
import { jobLane } from '../lib/services/jobs/job-lane';
import { requestScan } from '../lib/services/jobs/request-scan';
import { updateSource } from '../lib/services/sources/update-source';
import type { JobView } from '../lib/services/jobs/job-view';
import { parseWorkerArgs } from '../lib/worker/main';
import { cli, createMigratedCatalog, projectRoot, qemuImg, tempDir } from './helpers';
import { startS3Server } from './s3-server';

const s3 = await startS3Server();

const sha = async (file: string) => createHash('sha256').update(await fs.readFile(file)).digest('hex');
const waitFor = async <T>(what: string, probe: () => Promise<T | undefined>, seconds = 90): Promise<T> => {
  for (const end = Date.now() + seconds * 1000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
    const value = await probe();
    if (value !== undefined) return value;
  }
  throw new Error(`timed out waiting for ${what}`);
};

describe('workers on several hosts', () => {
  let db: PrismaClient;
  let queue: PgBoss;
  let shared: Record<string, string>;
  let root: string;
  const hosts = ['rack-a', 'rack-b'] as const;
  const fleets: Record<string, string> = {};
  const workers: ChildProcess[] = [];
  const outputs: Record<string, () => string> = {};
  const saved = { ...process.env };

  /** A worker as another host runs it: its own home, the shared catalog and bucket, `--sources` if given. */
  const startWorker = async (name: string, sources?: string) => {
    const home = path.join(root, `home-${name}`);
    const worker = spawn(process.execPath, [path.join(projectRoot, 'bin', 'worker.mjs'), ...(sources ? ['--sources', sources] : [])], {
      env: { ...process.env, ...shared, VMDEDUP_HOME: home, VMDEDUP_WORKER_NAME: name }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    worker.stdout!.on('data', (d) => { output += d; });
    worker.stderr!.on('data', (d) => { output += d; });
    workers.push(worker);
    outputs[name] = () => output;
    await waitFor(`worker ${name} to say it is alive`, async () => ((await db.worker.findUnique({ where: { name } })) ? true : undefined), 60);
    return worker;
  };
  const finished = (id: string) => waitFor(`job ${id} to finish`, async () => {
    const job = await getJob(db, id);
    return ['succeeded', 'partial', 'failed'].includes(job.state) ? job : undefined;
  });
  const ran = async (job: JobView) => {
    const done = await finished(job.id);
    expect(done.state, `${done.label}: ${done.error ?? ''}\n${Object.values(outputs).map((o) => o()).join('\n')}`).toBe('succeeded');
    return { ...done, row: await db.job.findUniqueOrThrow({ where: { id: job.id } }) };
  };

  beforeAll(async () => {
    root = await tempDir();
    const catalog = await createMigratedCatalog();
    db = catalog.db;
    const bucket = await s3.newBucket();
    shared = { ...s3.env, DATABASE_URL: catalog.url, VMDEDUP_REPOSITORY: `s3://${bucket}/fleet`, VMDEDUP_JOB_STALE_SECONDS: '10' }; // the workers' sweep every 5 s
    Object.assign(process.env, shared); // callWorker looks up in the catalog which source a call is about
    // Each host has its own copy of the same golden image (and of the site's config disk); the VMs' own disks differ.
    for (const [i, host] of hosts.entries()) {
      const fleet = await buildFleet({ dir: path.join(root, host), bases: 1, clonesPerBase: 2, baseMiB: 64, cloneDeltaMiB: 2, configDiskMiB: 1, privateDiskMiB: 64, vmwareVms: 0 });
      fleets[host] = fleet.libvirtDir;
      for (const vm of fleet.libvirtVms) await overwrite(path.join(fleet.libvirtDir, 'images', `${vm}-data.raw`), 0, 4 << 20, 1000 + i * 10 + fleet.libvirtVms.indexOf(vm));
      const added = await cli({ ...shared, VMDEDUP_HOME: path.join(root, 'admin') }, 'source', 'add', host, '--type', 'libvirt', '--path', fleet.libvirtDir);
      expect(added.code, added.stderr).toBe(0);
    }
    queue = new PgBoss({ connectionString: catalog.url, schema: 'pgboss', supervise: false, schedule: false });
    await queue.start();
  });

  afterAll(async () => {
    for (const worker of workers) worker.kill('SIGKILL');
    await queue?.stop({ graceful: false });
    await db?.$disconnect();
    process.env = saved;
  });

  it('reads which sources a worker serves from --sources or VMDEDUP_WORKER_SOURCES, and refuses a bad name', () => {
    expect(parseWorkerArgs([], {})).toEqual({ lanes: 'all', served: { every: true } });
    expect(parseWorkerArgs(['--sources', 'rack-a, rack-b,rack-a'], {})).toEqual({ lanes: 'all', served: { every: false, names: ['rack-a', 'rack-b'] } });
    expect(parseWorkerArgs(['--only', 'jobs'], { VMDEDUP_WORKER_SOURCES: 'rack-b' })).toEqual({ lanes: 'jobs', served: { every: false, names: ['rack-b'] } });
    expect(parseWorkerArgs(['--sources', 'a/../b'], {})).toMatch(/'a\/\.\.\/b' is not a source name/);
    expect(parseWorkerArgs(['--sources'], {})).toMatch(/usage: vmdedup worker/);
    // Given but empty (a unit file's unset variable) is not "every source".
    for (const [argv, env] of [[['--sources', ''], {}], [['--sources', ' , '], {}], [[], { VMDEDUP_WORKER_SOURCES: ' ' }], [['--sources', ''], { VMDEDUP_WORKER_SOURCES: 'rack-a' }]] as const) {
      expect(parseWorkerArgs([...argv], env), JSON.stringify([argv, env])).toMatch(/names no source/);
    }
  });

  it('sends each source\'s jobs only to its workers, which run at the same time; the shared base is stored once', async () => {
    await startWorker('host-a', 'rack-a');
    // Nobody serves rack-b yet: its job waits, and says for whom.
    const jobB = (await requestBackup(db, queue, { actor: 'ana', target: { source: 'rack-b' } })).job;
    expect(jobB.message).toBe("waiting for a worker serving source 'rack-b': none is running");
    const everything = (await requestBackup(db, queue, { actor: 'ana', target: {} })).job;
    expect(everything.message).toBe('waiting for a worker serving every source: none is running');
    await new Promise((r) => setTimeout(r, 2500));
    expect((await getJob(db, jobB.id)).state, 'the rack-a worker must not take rack-b\'s job').toBe('queued');

    await startWorker('host-b', 'rack-b');
    // host-b took rack-b's job as it started: rack-a's now, while it runs.
    const jobA = (await requestBackup(db, queue, { actor: 'ana', target: { source: 'rack-a' } })).job;
    expect(jobA.message).toBe('');
    const listed = await cli({ ...shared, VMDEDUP_HOME: path.join(root, 'admin') }, 'workers', '--json');
    expect((JSON.parse(listed.stdout) as { workers: unknown[] }).workers).toEqual([
      expect.objectContaining({ name: 'host-a', sources: ['rack-a'], lanes: 'all', alive: true }),
      expect.objectContaining({ name: 'host-b', sources: ['rack-b'], lanes: 'all', alive: true }),
    ]);
    const [a, b] = await Promise.all([ran(jobA), ran(jobB)]);
    expect(a.row.worker).toBe('host-a');
    expect(b.row.worker).toBe('host-b');
    expect([a.row.lane, b.row.lane]).toEqual(['source:rack-a', 'source:rack-b']);
    // At the same time: each started before the other finished.
    expect(a.row.startedAt!.getTime()).toBeLessThan(b.row.finishedAt!.getTime());
    expect(b.row.startedAt!.getTime()).toBeLessThan(a.row.finishedAt!.getTime());
    // Nobody serves every source: the backup of all of them still waits.
    expect((await getJob(db, everything.id)).state).toBe('queued');

    // One stored disk per distinct content: both hosts' copies of the base (and of the config disk) are one.
    const contents = new Set<string>();
    for (const host of hosts) {
      const images = path.join(fleets[host], 'images');
      for (const file of await fs.readdir(images)) contents.add(await sha(path.join(images, file)));
    }
    expect(await db.storedDisk.count()).toBe(contents.size);
    expect(contents.size).toBeLessThan(2 * (await fs.readdir(path.join(fleets['rack-a'], 'images'))).length);
  });

  it('a repository job goes to any worker; a restore plan of a host\'s VM to that host\'s worker', async () => {
    const gc = (await queueJob(db, queue, { kind: 'gc', target: {}, label: 'Garbage collection', actor: 'ana', audit: { action: 'gc.request', target: 'repository' } })).job;
    const done = await ran(gc);
    expect(done.row.lane).toBe('any');
    expect(['host-a', 'host-b']).toContain(done.row.worker);

    const backups = JSON.parse((await cli({ ...shared, VMDEDUP_HOME: path.join(root, 'admin') }, 'backups', '--json')).stdout) as { backups: { backupId: string; vm: string; source: string }[] };
    const ofB = backups.backups.find((x) => x.source === 'rack-b' && x.vm === 'vm01')!;
    const plan = { vm: 'vm01', backupId: ofB.backupId, target: { kind: 'folder' as const, dir: path.join(root, 'home-host-b', 'restores', 'plan') }, policy: 'no-overwrite' as const, choice: 'reattach' as const };
    const planned = await callWorker('plan-restore', plan, { queue });
    expect(planned.vm).toBe('vm01');
    expect(outputs['host-b']()).not.toMatch(/calls: the job queue is unreachable/);

    // Without rack-b's worker, nobody else plans for it (host-a could not read rack-b's disks on a real site).
    const hostB = workers[1];
    hostB.kill('SIGTERM');
    await new Promise((resolve) => hostB.once('exit', resolve));
    expect(await db.worker.findUnique({ where: { name: 'host-b' } }), 'a worker that stops removes itself').toBeNull();
    process.env.VMDEDUP_WORKER_CALL_TIMEOUT_MS = '1500';
    const refused = await callWorker('plan-restore', plan, { queue }).then(() => undefined, (e: unknown) => e);
    delete process.env.VMDEDUP_WORKER_CALL_TIMEOUT_MS;
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).message).toMatch(/no job worker serving source 'rack-b' answered within 2 s/);
  });

  it('a job whose source is renamed while it waits is failed and says why; a scheduled job follows the rename; a name is one worker\'s', async () => {
    // host-b is stopped: a scan of rack-b waits (a VM named in both sources needs a worker serving every source).
    expect(await jobLane(db, 'backup', { vm: 'vm01' })).toEqual({ kind: 'all-sources' });
    await cli({ ...shared, VMDEDUP_HOME: path.join(root, 'admin') }, 'job', 'add', 'nightly-b', '--source', 'rack-b', '--schedule', '0 3 * * *');
    const scan = (await requestScan(db, queue, { actor: 'ana', source: 'rack-b' })).job;
    expect(scan.message).toBe("waiting for a worker serving source 'rack-b': none is running");
    const rackB = await db.source.findUniqueOrThrow({ where: { name: 'rack-b' } });
    const sql = new pg.Pool({ connectionString: shared.DATABASE_URL });
    try {
      await updateSource(sql, { id: rackB.id, name: 'rack-c', type: rackB.type, path: rackB.path });
      // host-a's sweep (every 5 s here) finds the job's source gone.
      const failed = await finished(scan.id);
      expect(failed.state).toBe('failed');
      expect(failed.error).toMatch(/source 'rack-b' no longer exists \(renamed or removed after this job was queued\)/);
      expect((await db.scheduledJob.findUniqueOrThrow({ where: { name: 'nightly-b' } })).source).toBe('rack-c');
    } finally {
      await updateSource(sql, { id: rackB.id, name: 'rack-b', type: rackB.type, path: rackB.path });
      await sql.end();
    }
    expect((await db.scheduledJob.findUniqueOrThrow({ where: { name: 'nightly-b' } })).source).toBe('rack-b');

    // A second worker under a name a live one has is refused at its start.
    const twin = spawn(process.execPath, [path.join(projectRoot, 'bin', 'worker.mjs'), '--sources', 'rack-a'], {
      env: { ...process.env, ...shared, VMDEDUP_HOME: path.join(root, 'home-twin'), VMDEDUP_WORKER_NAME: 'host-a' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let said = '';
    twin.stderr!.on('data', (d) => { said += d; });
    const code = await new Promise((resolve) => twin.once('exit', resolve));
    expect(code).toBe(2);
    expect(said).toMatch(/a worker named 'host-a' is running on .*give this one another VMDEDUP_WORKER_NAME/);
  });

  it('a worker serving every source takes the backup of all of them; each host\'s VMs restore byte for byte', async () => {
    const waiting = await db.job.findFirstOrThrow({ where: { lane: 'all-sources', state: 'queued' } });
    await startWorker('host-all');
    const done = await ran({ id: waiting.id } as JobView);
    expect(done.row.worker).toBe('host-all');
    expect((done.result as { backups: unknown[] }).backups).toHaveLength(4);

    const admin = { ...shared, VMDEDUP_HOME: path.join(root, 'admin') };
    const backups = JSON.parse((await cli(admin, 'backups', '--json')).stdout) as { backups: { backupId: string; vm: string; source: string; createdAt: string }[] };
    for (const host of hosts) {
      for (const vm of ['vm01', 'vm02']) {
        const newest = backups.backups.filter((x) => x.source === host && x.vm === vm).sort((x, y) => y.createdAt.localeCompare(x.createdAt))[0];
        const target = path.join(root, 'restored', host, vm);
        const restored = await cli(admin, 'restore', vm, '--backup', newest.backupId, '--target', target, '--json');
        expect(restored.code, restored.stderr).toBe(0);
        const restoredFile = async (file: string) => {
          const copy = (await fs.readdir(target, { recursive: true })).find((f) => path.basename(f) === file);
          expect(copy, `${host}/${vm}: ${file} restored`).toBeDefined();
          return path.join(target, copy!);
        };
        const data = `${vm}-data.raw`;
        expect(await sha(await restoredFile(data)), `${host}/${vm}/${data}`).toBe(await sha(path.join(fleets[host], 'images', data)));
        // The linked clone now points at the restored base: the same guest bytes through its chain (qemu-img compares).
        await qemuImg('compare', await restoredFile(`${vm}.qcow2`), path.join(fleets[host], 'images', `${vm}.qcow2`));
      }
    }
  });
});
