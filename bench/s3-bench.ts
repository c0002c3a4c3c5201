/**
 * `npm run bench:s3` (part of `npm run bench`): backup and restore throughput of vmdedup to an S3-compatible server
 * (s3rver, the tests' server, started here on this machine) against a local folder, and against restic (with its own
 * encryption, which it always has) on a local folder, in the same run: first backup of a fleet, then the restore of
 * one VM. Figures are MB/s of the fleet's (or the VM's) bytes. restic cannot use s3rver (its backup fails reading the
 * repository config back: "Unmarshal: invalid character"), so restic is measured on a folder only.
 * Encrypted repositories (`repository init --encrypt`) are measured beside plain ones; the local plain and encrypted
 * figures, whose ratio is the cost of encryption, are the medians of BENCH_S3_RUNS runs (default 3), taken in turns.
 *
 * BENCH_DIR (default bench/.work) keeps the fleet; BENCH_S3_SCALE (default 0.25) sizes it.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { buildFleet } from '../lib/demo/fleet';
import { s3ClientFromEnvironment } from '../lib/engine/repository/s3-blob-store';
import { type S3ServerProcess, launchS3Server } from '../test/s3-server-process';
import { type Timed, du, timed } from './timing';

const run = promisify(execFile);
const root = path.resolve(process.env.BENCH_DIR ?? 'bench/.work');
const scale = Number(process.env.BENCH_S3_SCALE ?? 0.25);
const MB = 1e6;

/** The tests' S3 server in a fresh folder, with the benchmark's bucket. */
async function startServer(dir: string): Promise<S3ServerProcess> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  const server = await launchS3Server(dir);
  const client = s3ClientFromEnvironment(server.env);
  await client.send(new CreateBucketCommand({ Bucket: 'vmdedup-bench' }));
  client.destroy();
  return server;
}

type Run = { backup: Timed; restore: Timed };

/** `encrypt`: the repository is created with `repository init --encrypt` (each command then pays one scrypt, ~0.2 s). */
async function vmdedup(libvirtDir: string, repository: string, extra: Record<string, string>, encrypt = false): Promise<Run> {
  const home = path.join(root, 's3-vmdedup-home');
  const env = { ...extra, VMDEDUP_HOME: home, DATABASE_URL: '', VMDEDUP_REPOSITORY: repository, ...(encrypt ? { VMDEDUP_PASSWORD: 'bench' } : {}) };
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } }).catch(() => undefined);
  await fs.rm(home, { recursive: true, force: true });
  await fs.mkdir(home, { recursive: true });
  await fs.chmod(home, 0o755);
  await timed(process.execPath, ['bin/vmdedup.mjs', 'source', 'add', 'bench', '--type', 'libvirt', '--path', libvirtDir], env);
  if (encrypt) await timed(process.execPath, ['bin/vmdedup.mjs', 'repository', 'init', '--encrypt'], env);
  const backup = await timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--json'], env);
  const target = path.join(root, 's3-restore');
  await fs.rm(target, { recursive: true, force: true });
  const restore = await timed(process.execPath, ['bin/vmdedup.mjs', 'restore', 'vm01', '--target', target, '--policy', 'overwrite', '--json'], env);
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } });
  return { backup, restore };
}

async function restic(libvirtDir: string, repository: string, restoreFiles: string[]): Promise<Run> {
  const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repository, RESTIC_CACHE_DIR: path.join(root, 's3-restic-cache') };
  await fs.rm(env.RESTIC_CACHE_DIR, { recursive: true, force: true });
  await timed('restic', ['init', '--repository-version', '2'], env);
  const backup = await timed('restic', ['backup', '--quiet', libvirtDir], env);
  const target = path.join(root, 's3-restore');
  await fs.rm(target, { recursive: true, force: true });
  const restore = await timed('restic', ['restore', 'latest', '--target', target, ...restoreFiles.flatMap((file) => ['--include', file])], env);
  return { backup, restore };
}

const runs = Math.max(1, Number(process.env.BENCH_S3_RUNS ?? 3));

/** The median backup and the median restore of several runs (each its own median). */
function median(all: Run[]): Run {
  const mid = <T extends { seconds: number }>(values: T[]) => [...values].sort((a, b) => a.seconds - b.seconds)[Math.floor(values.length / 2)];
  return { backup: mid(all.map((r) => r.backup)), restore: mid(all.map((r) => r.restore)) };
}

async function main(): Promise<void> {
  const dir = path.join(root, `s3-fleet-x${scale}`);
  const marker = path.join(dir, '.complete');
  if (!(await fs.access(marker).then(() => true, () => false))) {
    await fs.rm(dir, { recursive: true, force: true });
    await buildFleet({ dir, bases: 1, clonesPerBase: 4, baseMiB: Math.round(1024 * scale), cloneDeltaMiB: Math.max(1, Math.round(48 * scale)), configDiskMiB: Math.max(1, Math.round(64 * scale)), privateDiskMiB: Math.max(1, Math.round(160 * scale)), vmwareVms: 0, seed: 2026 });
    await fs.writeFile(marker, '');
  }
  const libvirtDir = path.join(dir, 'libvirt');
  const images = path.join(libvirtDir, 'images');
  const restoreFiles = ['vm01.qcow2', 'base-1.qcow2', 'site-config.raw', 'vm01-data.raw'].map((name) => path.join(images, name));
  const fleetBytes = await du(libvirtDir);
  let vmBytes = 0;
  for (const file of restoreFiles) vmBytes += (await fs.stat(file)).size;

  const server = await startServer(path.join(root, 's3-server'));
  try {
    const local = path.join(root, 's3-local-repos');
    await fs.rm(local, { recursive: true, force: true });
    // Plain and encrypted in turns (each in a fresh repository), so a slow spell of the machine hits both alike.
    const plainRuns: Run[] = [];
    const sealedRuns: Run[] = [];
    for (let i = 0; i < runs; i++) {
      await fs.rm(local, { recursive: true, force: true });
      plainRuns.push(await vmdedup(libvirtDir, path.join(local, 'vmdedup'), {}));
      sealedRuns.push(await vmdedup(libvirtDir, path.join(local, 'vmdedup-encrypted'), {}, true));
    }
    const results: [string, Run][] = [
      [`vmdedup local (median of ${runs})`, median(plainRuns)],
      ['vmdedup S3', await vmdedup(libvirtDir, 's3://vmdedup-bench/repo', server.env)],
      ['restic local', await restic(libvirtDir, path.join(local, 'restic'), restoreFiles)],
      [`vmdedup local, encrypted (median of ${runs})`, median(sealedRuns)],
      ['vmdedup S3, encrypted', await vmdedup(libvirtDir, 's3://vmdedup-bench/encrypted', server.env, true)],
    ];
    const rate = (bytes: number, t: Timed) => bytes / MB / t.seconds;
    const [ourLocal, ourS3, theirLocal, ourLocalSealed, ourS3Sealed] = results.map(([, r]) => r);
    console.log(`\nS3 benchmark — fleet of ${(fleetBytes / MB).toFixed(0)} MB (5 VMs on one qcow2 base), restore of vm01 (${(vmBytes / MB).toFixed(0)} MB); server: s3rver on this machine`);
    console.log(`${''.padEnd(37)}first backup        restore of one VM`);
    for (const [name, r] of results) console.log(`${name.padEnd(36)} ${r.backup.seconds.toFixed(2).padStart(6)} s ${rate(fleetBytes, r.backup).toFixed(0).padStart(5)} MB/s   ${r.restore.seconds.toFixed(2).padStart(6)} s ${rate(vmBytes, r.restore).toFixed(0).padStart(5)} MB/s`);
    console.log(`vmdedup S3/local throughput: backup ${(ourLocal.backup.seconds / ourS3.backup.seconds).toFixed(2)}x, restore ${(ourLocal.restore.seconds / ourS3.restore.seconds).toFixed(2)}x`);
    console.log(`vmdedup S3 / restic local (encrypted): backup ${(theirLocal.backup.seconds / ourS3.backup.seconds).toFixed(2)}x restic's throughput, restore ${(theirLocal.restore.seconds / ourS3.restore.seconds).toFixed(2)}x`);
    console.log(`vmdedup local / restic local: backup ${(theirLocal.backup.seconds / ourLocal.backup.seconds).toFixed(2)}x, restore ${(theirLocal.restore.seconds / ourLocal.restore.seconds).toFixed(2)}x`);
    console.log(`encrypted / plain throughput: local backup ${(ourLocal.backup.seconds / ourLocalSealed.backup.seconds).toFixed(2)}x, restore ${(ourLocal.restore.seconds / ourLocalSealed.restore.seconds).toFixed(2)}x; S3 backup ${(ourS3.backup.seconds / ourS3Sealed.backup.seconds).toFixed(2)}x, restore ${(ourS3.restore.seconds / ourS3Sealed.restore.seconds).toFixed(2)}x`);
    console.log(`vmdedup local encrypted / restic local (both encrypted): backup ${(theirLocal.backup.seconds / ourLocalSealed.backup.seconds).toFixed(2)}x restic's throughput, restore ${(theirLocal.restore.seconds / ourLocalSealed.restore.seconds).toFixed(2)}x`);
  } finally {
    await server.stop();
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
