/**
 * `npm run bench`: builds a reference fleet (12 VMs on 2 qcow2 bases with linked clones, one configuration
 * disk attached to every VM, private raw disks; semi-compressible data, ~4.6 GB of files) and backs it up
 * with vmdedup, restic and borg (Debian packages) in the same run. Prints throughput, stored bytes,
 * unchanged re-backup time, peak memory, and the ratios to each peer.
 *
 * BENCH_DIR (default bench/.work) keeps the fleet between runs; BENCH_SCALE=0.25 makes a smaller fleet.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildFleet } from '../lib/demo/fleet';
import { du, medianOf, timed } from './timing';

const run = promisify(execFile);
const root = path.resolve(process.env.BENCH_DIR ?? 'bench/.work');
const scale = Number(process.env.BENCH_SCALE ?? 1);
const fleetDir = path.join(root, `fleet-x${scale}`);
const MB = 1e6;

async function fleetBytes(): Promise<number> {
  return du(path.join(fleetDir, 'libvirt'));
}

async function ensureFleet(): Promise<void> {
  const marker = path.join(fleetDir, '.complete');
  if (await fs.access(marker).then(() => true, () => false)) return;
  await fs.rm(fleetDir, { recursive: true, force: true });
  process.stderr.write(`building the reference fleet in ${fleetDir} ...\n`);
  await buildFleet({
    dir: fleetDir, bases: 2, clonesPerBase: 6,
    baseMiB: Math.round(1024 * scale), cloneDeltaMiB: Math.max(1, Math.round(48 * scale)),
    configDiskMiB: Math.max(1, Math.round(64 * scale)), privateDiskMiB: Math.max(1, Math.round(160 * scale)),
    vmwareVms: 0, seed: 2026,
  });
  await fs.writeFile(marker, '');
}

type Result = {
  tool: string; firstSeconds: number; storedBytes: number; rebackupSeconds: number; peakRssBytes: number; restoreSeconds?: number; restoreBytes?: number;
  /** Re-reading and re-hashing everything stored (vmdedup verify; restic check --read-data). */
  verify?: { seconds: number; chunks?: number; bytes: number };
  /** vmdedup prune --keep-last 1 then gc: the seconds of gc, the chunks it looked at, what it removed. */
  gc?: { seconds: number; chunks: number; removedChunks: number; freedBytes: number; pruneSeconds: number };
};

/** The VM restored by the restore benchmark: its clone, the base, the configuration disk and its data disk. */
const RESTORE_VM = 'vm01';
const restoreFiles = () => ['vm01.qcow2', 'base-1.qcow2', 'site-config.raw', 'vm01-data.raw'].map((name) => path.join(fleetDir, 'libvirt', 'images', name));

const REBACKUP_RUNS = 5;
/** Restores write a gigabyte of new page cache: the first touch of fresh memory on this VM costs seconds of
 *  system time for whichever tool runs first, so every tool's restore is the median of 3. */
const RESTORE_RUNS = 3;

async function benchVmdedup(): Promise<Result> {
  const home = path.join(root, 'vmdedup-home');
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, VMDEDUP_HOME: home } }).catch(() => undefined);
  await fs.rm(home, { recursive: true, force: true });
  await fs.mkdir(home, { recursive: true });
  await fs.chmod(home, 0o755);
  const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
  await timed(process.execPath, ['bin/vmdedup.mjs', 'source', 'add', 'bench', '--type', 'libvirt', '--path', path.join(fleetDir, 'libvirt')], env);
  const first = await timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--json'], env);
  const report = JSON.parse(first.stdout) as { backups: unknown[]; totals: { bytesRead: number } };
  if (report.backups.length !== 12) throw new Error(`vmdedup backed up ${report.backups.length} VMs, expected 12`);
  const again = await medianOf(REBACKUP_RUNS, () => timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--json'], env));
  const rebackup = JSON.parse(again.stdout) as { totals: { bytesRead: number } };
  if (rebackup.totals.bytesRead !== 0) throw new Error('unchanged re-backup read data');
  const storedBytes = await du(path.join(home, 'repository'));
  // Restore every disk of one VM into a folder (policy overwrite: shared disks are written there too).
  const target = path.join(root, 'vmdedup-restore');
  let restoreBytes = 0;
  const restored = await medianOf(RESTORE_RUNS, async () => {
    await fs.rm(target, { recursive: true, force: true });
    const once = await timed(process.execPath, ['bin/vmdedup.mjs', 'restore', RESTORE_VM, '--target', target, '--policy', 'overwrite', '--json'], env);
    restoreBytes = await du(path.join(target, 'images'));
    return once;
  });
  await fs.rm(target, { recursive: true, force: true });
  // Verify everything (each chunk read and re-hashed once), then prune all but the last backup and collect garbage
  // after a change to one VM's data disk (what the old version alone needed is freed).
  const verified = await timed(process.execPath, ['bin/vmdedup.mjs', 'verify', '--json'], env);
  const verifyReport = JSON.parse(verified.stdout) as { checkedChunks: number; bytesRead: number; damaged: unknown[] };
  if (verifyReport.damaged.length) throw new Error('verify found damage');
  // vm02's data disk holds 16 MiB of new random data for one backup, then its content again: prune keeps the last
  // backup, and gc frees what only the one in between needed.
  const dataDisk = path.join(fleetDir, 'libvirt', 'images', 'vm02-data.raw');
  const original = await fs.readFile(dataDisk);
  await fs.writeFile(dataDisk, Buffer.concat([randomBytes(16 * 1024 * 1024), original.subarray(16 * 1024 * 1024)]));
  try {
    await timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--vm', 'vm02', '--json'], env);
  } finally {
    await fs.writeFile(dataDisk, original);
  }
  await timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--vm', 'vm02', '--json'], env);
  const pruned = await timed(process.execPath, ['bin/vmdedup.mjs', 'prune', '--keep-last', '1', '--json'], env);
  const collected = await timed(process.execPath, ['bin/vmdedup.mjs', 'gc', '--json'], env);
  const gcReport = JSON.parse(collected.stdout) as { chunks: number; removedChunks: number; freedBytes: number };
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } });
  return {
    tool: 'vmdedup', firstSeconds: first.seconds, storedBytes, rebackupSeconds: again.seconds,
    peakRssBytes: Math.max(first.peakRssBytes, again.peakRssBytes, restored.peakRssBytes), restoreSeconds: restored.seconds, restoreBytes,
    verify: { seconds: verified.seconds, chunks: verifyReport.checkedChunks, bytes: verifyReport.bytesRead },
    gc: { seconds: collected.seconds, chunks: gcReport.chunks, removedChunks: gcReport.removedChunks, freedBytes: gcReport.freedBytes, pruneSeconds: pruned.seconds },
  };
}

async function benchRestic(): Promise<Result> {
  const repo = path.join(root, 'restic-repo');
  await fs.rm(repo, { recursive: true, force: true });
  const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: path.join(root, 'restic-cache') };
  await timed('restic', ['init', '--repository-version', '2'], env);
  const first = await timed('restic', ['backup', '--quiet', path.join(fleetDir, 'libvirt')], env);
  const again = await medianOf(REBACKUP_RUNS, () => timed('restic', ['backup', '--quiet', path.join(fleetDir, 'libvirt')], env));
  const target = path.join(root, 'restic-restore');
  let restoreBytes = 0;
  const restored = await medianOf(RESTORE_RUNS, async () => {
    await fs.rm(target, { recursive: true, force: true });
    const once = await timed('restic', ['restore', 'latest', '--target', target, ...restoreFiles().flatMap((file) => ['--include', file])], env);
    restoreBytes = await du(target);
    return once;
  });
  await fs.rm(target, { recursive: true, force: true });
  const storedBytes = await du(repo);
  const checked = await timed('restic', ['check', '--read-data'], env);
  return {
    tool: 'restic', firstSeconds: first.seconds, storedBytes, rebackupSeconds: again.seconds,
    peakRssBytes: Math.max(first.peakRssBytes, again.peakRssBytes), restoreSeconds: restored.seconds, restoreBytes,
    verify: { seconds: checked.seconds, bytes: storedBytes },
  };
}

async function benchBorg(): Promise<Result> {
  const repo = path.join(root, 'borg-repo');
  await fs.rm(repo, { recursive: true, force: true });
  const env = { BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_BASE_DIR: path.join(root, 'borg-base') };
  await timed('borg', ['init', '--encryption', 'none', repo], env);
  const first = await timed('borg', ['create', '--compression', 'zstd,1', `${repo}::first`, path.join(fleetDir, 'libvirt')], env);
  let archive = 0;
  const again = await medianOf(REBACKUP_RUNS, () => timed('borg', ['create', '--compression', 'zstd,1', `${repo}::again-${++archive}`, path.join(fleetDir, 'libvirt')], env));
  return { tool: 'borg', firstSeconds: first.seconds, storedBytes: await du(repo), rebackupSeconds: again.seconds, peakRssBytes: Math.max(first.peakRssBytes, again.peakRssBytes) };
}

async function main(): Promise<void> {
  await fs.mkdir(root, { recursive: true });
  await ensureFleet();
  const logical = await fleetBytes();
  // Warm the page cache once so every tool reads the fleet from memory alike.
  await run('bash', ['-c', `cat $(find ${JSON.stringify(path.join(fleetDir, 'libvirt'))} -type f) > /dev/null`]);
  const results: Result[] = [];
  for (const bench of [benchVmdedup, benchRestic, benchBorg]) {
    process.stderr.write(`running ${bench.name.replace('bench', '').toLowerCase()} ...\n`);
    results.push(await bench());
  }
  const [ours, ...peers] = results;
  const gbps = (r: Result) => logical / r.firstSeconds / MB;
  console.log(`vmdedup benchmark — ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`);
  console.log(`reference fleet: 12 VMs, ${(logical / 1e9).toFixed(2)} GB of image files (${fleetDir})\n`);
  console.log(`tool      first backup      stored        unchanged re-backup   peak RSS   (re-backup: median of ${REBACKUP_RUNS})`);
  for (const r of results) {
    console.log(`${r.tool.padEnd(9)} ${r.firstSeconds.toFixed(2).padStart(6)} s ${gbps(r).toFixed(0).padStart(5)} MB/s  ${(r.storedBytes / MB).toFixed(0).padStart(6)} MB   ${r.rebackupSeconds.toFixed(2).padStart(8)} s            ${(r.peakRssBytes / MB).toFixed(0).padStart(5)} MB`);
  }
  console.log('');
  for (const peer of peers) {
    console.log(`vs ${peer.tool}: throughput ${(gbps(ours) / gbps(peer)).toFixed(2)}x, stored bytes ${(ours.storedBytes / peer.storedBytes).toFixed(3)}x, re-backup ${(peer.rebackupSeconds / ours.rebackupSeconds).toFixed(2)}x faster`);
  }
  const restic = results.find((r) => r.tool === 'restic')!;
  const restoreRate = (r: Result) => r.restoreBytes! / r.restoreSeconds! / MB;
  console.log(`restore of ${RESTORE_VM} (${(ours.restoreBytes! / 1e9).toFixed(2)} GB, every disk into a folder, median of ${RESTORE_RUNS}): vmdedup ${ours.restoreSeconds!.toFixed(2)} s (${restoreRate(ours).toFixed(0)} MB/s), restic ${restic.restoreSeconds!.toFixed(2)} s (${restoreRate(restic).toFixed(0)} MB/s): ${(restoreRate(ours) / restoreRate(restic)).toFixed(2)}x`);
  console.log(`vmdedup peak memory: ${(ours.peakRssBytes / MB).toFixed(0)} MB (target <= 256 MB)`);
  const v = ours.verify!;
  const rv = restic.verify!;
  console.log(`verify (every stored chunk re-read and re-hashed): vmdedup ${v.seconds.toFixed(2)} s, ${(v.chunks! / v.seconds).toFixed(0)} chunks/s, ${(v.bytes / v.seconds / MB).toFixed(0)} MB/s of blocks; restic check --read-data ${rv.seconds.toFixed(2)} s (${(rv.bytes / rv.seconds / MB).toFixed(0)} MB/s of its repository): ${(rv.seconds / v.seconds).toFixed(2)}x faster`);
  const g = ours.gc!;
  console.log(`gc after prune --keep-last 1 (prune ${g.pruneSeconds.toFixed(2)} s): ${g.seconds.toFixed(2)} s over ${g.chunks} chunks (${(g.chunks / g.seconds).toFixed(0)} chunks/s), removed ${g.removedChunks} chunks, ${(g.freedBytes / MB).toFixed(0)} MB`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
