/**
 * `npm run bench`: backs up two fleets with vmdedup, restic and borg (Debian packages) in the same run and prints
 * every figure with its ratio to each peer:
 * - the reference fleet: 12 VMs on 2 qcow2 bases with linked clones, one configuration disk attached to every VM,
 *   private raw disks (~4.6 GB of files);
 * - the host fleet (bench/host-fleet.ts): 3 qcow2 bases, linked clones with scattered writes, a full raw clone of a
 *   base, a shared configuration disk, private data disks of different sizes.
 * Figures: first backup, stored bytes, unchanged re-backup, a 16 MiB change in each of three VMs, restore of one VM
 * (each the median of three runs), peak memory; then, on the reference fleet, verify and garbage collection.
 *
 * BENCH_DIR (default bench/.work) keeps the fleets between runs; BENCH_SCALE=0.25 makes them smaller;
 * BENCH_FLEETS=reference or =hosts runs one.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildFleet, overwrite } from '../lib/demo/fleet';
import { buildHostFleet } from './host-fleet';
import { type Timed, du, medianOf, timed } from './timing';

const run = promisify(execFile);
const root = path.resolve(process.env.BENCH_DIR ?? 'bench/.work');
const scale = Number(process.env.BENCH_SCALE ?? 1);
const MB = 1e6;
const MiB = 1024 * 1024;
const RUNS = 3;
const CHANGE_BYTES = 16 * MiB;

type Fleet = { label: string; libvirtDir: string; vms: number; restoreVm: string; restoreFiles: string[]; changedFiles: string[] };

/** Built once per BENCH_DIR and scale (a marker says it is complete). */
async function ensure(dir: string, build: () => Promise<Omit<Fleet, 'label'>>, label: string): Promise<Fleet> {
  const marker = path.join(dir, '.complete.json');
  const done = await fs.readFile(marker, 'utf8').then((text) => JSON.parse(text) as Omit<Fleet, 'label'>, () => undefined);
  if (done) return { label, ...done };
  await fs.rm(dir, { recursive: true, force: true });
  process.stderr.write(`building the ${label} in ${dir} ...\n`);
  const fleet = await build();
  await fs.writeFile(marker, JSON.stringify(fleet));
  return { label, ...fleet };
}

const referenceFleet = () => {
  const dir = path.join(root, `fleet-x${scale}`);
  return ensure(dir, async () => {
    const built = await buildFleet({
      dir, bases: 2, clonesPerBase: 6,
      baseMiB: Math.round(1024 * scale), cloneDeltaMiB: Math.max(1, Math.round(48 * scale)),
      configDiskMiB: Math.max(1, Math.round(64 * scale)), privateDiskMiB: Math.max(1, Math.round(160 * scale)),
      vmwareVms: 0, seed: 2026,
    });
    const images = path.join(built.libvirtDir, 'images');
    return {
      libvirtDir: built.libvirtDir, vms: built.libvirtVms.length, restoreVm: 'vm01',
      restoreFiles: ['vm01.qcow2', 'base-1.qcow2', 'site-config.raw', 'vm01-data.raw'].map((name) => path.join(images, name)),
      changedFiles: ['vm02-data.raw', 'vm05-data.raw', 'vm09-data.raw'].map((name) => path.join(images, name)),
    };
  }, 'reference fleet');
};

const hostFleet = () => {
  const dir = path.join(root, `hosts-x${scale}`);
  return ensure(dir, async () => {
    const built = await buildHostFleet(dir, scale);
    return { libvirtDir: built.libvirtDir, vms: built.vms.length, restoreVm: built.restoreVm, restoreFiles: built.restoreFiles, changedFiles: built.changedFiles };
  }, 'host fleet');
};

/** One tool as the benchmark drives it: each step on the whole fleet (restore: the fleet's restore VM's disks). */
type Tool = {
  name: string;
  /** An empty repository. */
  fresh(): Promise<void>;
  backup(): Promise<Timed>;
  storedBytes(): Promise<number>;
  /** Restores the restore VM's disks into `target`; the bytes restored. */
  restore(target: string): Promise<Timed & { bytes: number }>;
};

type Figures = {
  tool: string; first: Timed; storedBytes: number; rebackup: Timed; change: Timed; changeStoredBytes: number;
  restore: Timed; restoreBytes: number; peakRssBytes: number;
};

function vmdedup(fleet: Fleet): Tool & { home: string; env: Record<string, string> } {
  const home = path.join(root, 'vmdedup-home');
  const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
  const cli = (...args: string[]) => timed(process.execPath, ['bin/vmdedup.mjs', ...args], env);
  return {
    name: 'vmdedup', home, env,
    fresh: async () => {
      await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } }).catch(() => undefined);
      await fs.rm(home, { recursive: true, force: true });
      await fs.mkdir(home, { recursive: true });
      await fs.chmod(home, 0o755);
      await cli('source', 'add', 'bench', '--type', 'libvirt', '--path', fleet.libvirtDir);
    },
    backup: async () => {
      const done = await cli('backup', '--json');
      const report = JSON.parse(done.stdout) as { backups: unknown[] };
      if (report.backups.length !== fleet.vms) throw new Error(`vmdedup backed up ${report.backups.length} VMs, expected ${fleet.vms}`);
      return done;
    },
    storedBytes: () => du(path.join(home, 'repository')),
    // Every disk of the VM into a folder (policy overwrite: its shared disks are written there too).
    restore: async (target) => {
      const done = await cli('restore', fleet.restoreVm, '--target', target, '--policy', 'overwrite', '--json');
      return { ...done, bytes: await du(target) };
    },
  };
}

function restic(fleet: Fleet): Tool {
  const repo = path.join(root, 'restic-repo');
  const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: path.join(root, 'restic-cache') };
  return {
    name: 'restic',
    fresh: async () => {
      await fs.rm(repo, { recursive: true, force: true });
      await timed('restic', ['init', '--repository-version', '2'], env);
    },
    backup: () => timed('restic', ['backup', '--quiet', fleet.libvirtDir], env),
    storedBytes: () => du(repo),
    restore: async (target) => {
      const done = await timed('restic', ['restore', 'latest', '--target', target, ...fleet.restoreFiles.flatMap((file) => ['--include', file])], env);
      return { ...done, bytes: await du(target) };
    },
  };
}

function borg(fleet: Fleet): Tool {
  const repo = path.join(root, 'borg-repo');
  const env = { BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_BASE_DIR: path.join(root, 'borg-base') };
  let archives = 0;
  return {
    name: 'borg',
    fresh: async () => {
      await fs.rm(repo, { recursive: true, force: true });
      await timed('borg', ['init', '--encryption', 'none', repo], env);
    },
    backup: () => timed('borg', ['create', '--compression', 'zstd,1', `${repo}::a${++archives}`, fleet.libvirtDir], env),
    storedBytes: () => du(repo),
    // borg extract writes into the working folder, the paths without their leading slash.
    restore: async (target) => {
      await fs.mkdir(target, { recursive: true });
      const done = await timedIn(target, 'borg', ['extract', `${repo}::a${archives}`, ...fleet.restoreFiles.map((file) => file.slice(1))], env);
      return { ...done, bytes: await du(target) };
    },
  };
}

/** `timed` in another working folder. */
async function timedIn(cwd: string, command: string, args: string[], env: Record<string, string>): Promise<Timed> {
  const here = process.cwd();
  process.chdir(cwd);
  try {
    return await timed(command, args, env);
  } finally {
    process.chdir(here);
  }
}

/** The regions the change rounds overwrite, and how to put them back (every tool sees the same fleet). */
async function changeRegions(fleet: Fleet) {
  const regions = await Promise.all(fleet.changedFiles.map(async (file) => {
    const size = (await fs.stat(file)).size;
    const offset = Math.max(0, Math.floor((size - CHANGE_BYTES) / 2 / MiB)) * MiB;
    const handle = await fs.open(file, 'r');
    const original = Buffer.alloc(Math.min(CHANGE_BYTES, size));
    await handle.read(original, 0, original.length, offset);
    await handle.close();
    return { file, offset, original };
  }));
  return {
    change: (round: number) => Promise.all(regions.map((r, i) => overwrite(r.file, r.offset, r.original.length, 7000 + round * 10 + i))),
    restore: () => Promise.all(regions.map(async (r) => {
      const handle = await fs.open(r.file, 'r+');
      await handle.write(r.original, 0, r.original.length, r.offset);
      await handle.close();
    })),
  };
}

async function measure(fleet: Fleet, tool: Tool): Promise<Figures> {
  process.stderr.write(`${fleet.label}: ${tool.name} ...\n`);
  // First backup: each of the three into an empty repository; the last one's repository goes on.
  const first = await medianOf(RUNS, async () => {
    await tool.fresh();
    return tool.backup();
  });
  const storedBytes = await tool.storedBytes();
  const rebackup = await medianOf(RUNS, () => tool.backup());
  const regions = await changeRegions(fleet);
  let round = 0;
  let change: Timed;
  try {
    change = await medianOf(RUNS, async () => {
      await regions.change(++round);
      return tool.backup();
    });
  } finally {
    await regions.restore();
  }
  const changeStoredBytes = (await tool.storedBytes() - storedBytes) / RUNS;
  const target = path.join(root, `${tool.name}-restore`);
  let restoreBytes = 0;
  // Restores write a gigabyte of new page cache: the first touch of fresh memory costs seconds of system time for
  // whichever tool runs first, hence the median of three for every tool.
  const restore = await medianOf(RUNS, async () => {
    await fs.rm(target, { recursive: true, force: true });
    const once = await tool.restore(target);
    restoreBytes = once.bytes;
    return once;
  });
  await fs.rm(target, { recursive: true, force: true });
  return {
    tool: tool.name, first, storedBytes, rebackup, change, changeStoredBytes, restore, restoreBytes,
    peakRssBytes: Math.max(first.peakRssBytes, rebackup.peakRssBytes, change.peakRssBytes, restore.peakRssBytes),
  };
}

function report(fleet: Fleet, logical: number, results: Figures[]): void {
  const [ours, ...peers] = results;
  const rate = (bytes: number, t: Timed) => `${(bytes / t.seconds / MB).toFixed(0).padStart(5)} MB/s`;
  console.log(`\n${fleet.label}: ${fleet.vms} VMs, ${(logical / 1e9).toFixed(2)} GB of image files; restore: ${fleet.restoreVm} (${(ours.restoreBytes / 1e9).toFixed(2)} GB); each time the median of ${RUNS}`);
  console.log('tool      first backup          stored     unchanged   16 MiB in 3 VMs        restore               peak RSS');
  for (const r of results) {
    console.log(`${r.tool.padEnd(9)} ${r.first.seconds.toFixed(2).padStart(6)} s ${rate(logical, r.first)}  ${(r.storedBytes / MB).toFixed(0).padStart(6)} MB  ${r.rebackup.seconds.toFixed(2).padStart(6)} s  ${r.change.seconds.toFixed(2).padStart(6)} s (+${(r.changeStoredBytes / MB).toFixed(0).padStart(3)} MB)   ${r.restore.seconds.toFixed(2).padStart(6)} s ${rate(r.restoreBytes, r.restore)}  ${(r.peakRssBytes / MB).toFixed(0).padStart(5)} MB`);
  }
  const faster = (peer: Timed, own: Timed) => `${(peer.seconds / own.seconds).toFixed(2)}x`;
  for (const peer of peers) {
    console.log(`vmdedup vs ${peer.tool}: first backup ${faster(peer.first, ours.first)} as fast, stored bytes ${(ours.storedBytes / peer.storedBytes).toFixed(3)}x, unchanged re-backup ${faster(peer.rebackup, ours.rebackup)}, change ${faster(peer.change, ours.change)} (stored ${(ours.changeStoredBytes / peer.changeStoredBytes).toFixed(2)}x), restore ${(ours.restoreBytes / ours.restore.seconds / (peer.restoreBytes / peer.restore.seconds)).toFixed(2)}x the throughput`);
  }
}

/** Verify, then prune all but the last backup and collect garbage (after the change rounds: what only they needed). */
async function maintenance(tool: ReturnType<typeof vmdedup>, fleet: Fleet): Promise<void> {
  const cli = (...args: string[]) => timed(process.execPath, ['bin/vmdedup.mjs', ...args], tool.env);
  await tool.backup(); // the fleet as it was before the change rounds
  const verified = await cli('verify', '--json');
  const v = JSON.parse(verified.stdout) as { checkedChunks: number; bytesRead: number; damaged: unknown[] };
  if (v.damaged.length) throw new Error('verify found damage');
  const peer = restic(fleet);
  const checked = await timed('restic', ['check', '--read-data'], { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: path.join(root, 'restic-repo'), RESTIC_CACHE_DIR: path.join(root, 'restic-cache') });
  const resticBytes = await peer.storedBytes();
  const pruned = await cli('prune', '--keep-last', '1', '--json');
  const collected = await cli('gc', '--json');
  const g = JSON.parse(collected.stdout) as { chunks: number; removedChunks: number; freedBytes: number };
  console.log(`verify (every stored chunk re-read and re-hashed): vmdedup ${verified.seconds.toFixed(2)} s, ${(v.checkedChunks / verified.seconds).toFixed(0)} chunks/s, ${(v.bytesRead / verified.seconds / MB).toFixed(0)} MB/s of blocks; restic check --read-data ${checked.seconds.toFixed(2)} s (${(resticBytes / checked.seconds / MB).toFixed(0)} MB/s of its repository): ${(checked.seconds / verified.seconds).toFixed(2)}x faster`);
  console.log(`gc after prune --keep-last 1 (prune ${pruned.seconds.toFixed(2)} s): ${collected.seconds.toFixed(2)} s over ${g.chunks} chunks (${(g.chunks / collected.seconds).toFixed(0)} chunks/s), removed ${g.removedChunks} chunks, ${(g.freedBytes / MB).toFixed(0)} MB`);
}

async function main(): Promise<void> {
  await fs.mkdir(root, { recursive: true });
  const wanted = (process.env.BENCH_FLEETS ?? 'reference,hosts').split(',');
  console.log(`vmdedup benchmark — ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`);
  let peak = 0;
  for (const [name, make] of [['reference', referenceFleet], ['hosts', hostFleet]] as const) {
    if (!wanted.includes(name)) continue;
    const fleet = await make();
    const logical = await du(fleet.libvirtDir);
    // Warm the page cache once so every tool reads the fleet from memory alike.
    await run('bash', ['-c', `cat $(find ${JSON.stringify(fleet.libvirtDir)} -type f) > /dev/null`]);
    const ours = vmdedup(fleet);
    const results: Figures[] = [];
    for (const tool of [ours, restic(fleet), borg(fleet)]) results.push(await measure(fleet, tool));
    report(fleet, logical, results);
    peak = Math.max(peak, results[0].peakRssBytes);
    if (name === 'reference') await maintenance(ours, fleet);
    await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...ours.env } }).catch(() => undefined);
  }
  console.log(`\nvmdedup peak memory: ${(peak / MB).toFixed(0)} MB (target <= 256 MB)`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
