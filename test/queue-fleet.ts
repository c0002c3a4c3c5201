/**
 * The fixture of the worker and scheduling tests: a migrated catalog, a demo fleet registered as source `kvm`, a
 * pg-boss queue on the catalog, and real worker processes (killed when the file ends).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import PgBoss from 'pg-boss';
import { expect } from 'vitest';
import { type FleetOptions, buildFleet } from '../lib/demo/fleet';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { JOB_QUEUE } from '../lib/jobs/queue';
import { cli, createMigratedCatalog, projectRoot, tempDir } from './helpers';

export type QueueFleet = {
  db: PrismaClient; queue: PgBoss; env: Record<string, string>;
  /** A worker process with the fixture's environment and `extra`; its output is collected in `output()`. */
  startWorker(extra?: Record<string, string>): ChildProcess & { output: () => string };
  close(): Promise<void>;
};

export async function openQueueFleet(options: { fleet: Omit<FleetOptions, 'dir'>; env?: Record<string, string> }): Promise<QueueFleet> {
  const home = await tempDir();
  const catalog = await createMigratedCatalog();
  const env = { VMDEDUP_HOME: home, DATABASE_URL: catalog.url, ...options.env };
  const fleet = await buildFleet({ dir: path.join(home, 'fleet'), ...options.fleet });
  expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
  const queue = new PgBoss({ connectionString: catalog.url, schema: 'pgboss', supervise: false, schedule: false });
  await queue.start();
  await queue.createQueue(JOB_QUEUE);
  const workers: ChildProcess[] = [];
  return {
    db: catalog.db, queue, env,
    startWorker(extra = {}) {
      const worker = spawn(process.execPath, [path.join(projectRoot, 'bin', 'worker.mjs')], { env: { ...process.env, ...env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
      workers.push(worker);
      let output = '';
      worker.stdout!.on('data', (d) => { output += d; });
      worker.stderr!.on('data', (d) => { output += d; });
      return Object.assign(worker, { output: () => output });
    },
    async close() {
      for (const worker of workers) worker.kill('SIGKILL');
      await queue.stop({ graceful: false });
      await catalog.db.$disconnect();
    },
  };
}
