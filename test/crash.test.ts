/**
 * Crash tests, seeded and bounded: kill -9 of the CLI at random points of `backup` and of `catalog rebuild`,
 * and kill -9 of the catalog's PostgreSQL server (every process of it: a crash, not a shutdown) during a
 * backup. After each crash the next command runs; then the repository is checked whole (every chunk
 * re-hashes to its name, every manifest parses and names only what exists), no image of the repository is
 * missing from the catalog, and every backup a killed run finished restores to a folder byte for byte as the
 * source was when it was taken. The test has its own PostgreSQL (embedded, in a temp folder) to kill.
 *
 * VMDEDUP_CRASH_SEED (default 9) and VMDEDUP_CRASH_ITERATIONS (per CLI kind, default 12; server kills: a
 * quarter, at least 3) run other or more cases; the figures are printed for the record.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import zstd from 'zstd-napi/binding.js';
import { ensureEmbeddedCatalog, stopEmbeddedCatalog } from '../lib/catalog/embedded-postgres';
import { CATALOG_INDEX_LOCK } from '../lib/catalog/locks';
import { type Fleet, buildFleet, overwrite } from '../lib/demo/fleet';
import { BlockPool } from '../lib/engine/chunking/block-pool';
import { CHUNK_RAW, CHUNK_ZSTD } from '../lib/engine/repository/chunk-codec';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import type { BackupImageManifest } from '../lib/engine/repository/manifests';
import { Repository } from '../lib/engine/repository/repository';
import { parseChunkId } from '../lib/engine/repository/chunk-id';
import { cli, projectRoot, qemuImg, readStoredBlock, repositoryImageIds, run, storedDiskDigests, storedImage, tempDir } from './helpers';

const SEED = Number(process.env.VMDEDUP_CRASH_SEED ?? 9);
const ITERATIONS = Number(process.env.VMDEDUP_CRASH_ITERATIONS ?? 12);
const SERVER_ITERATIONS = Math.max(3, Math.round(ITERATIONS / 4));

/** mulberry32: a small seeded generator, so a failing case can be run again. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Exit = { code: number | null; signal: NodeJS.Signals | null; stderr: string; ms: number };

describe('crash tests (kill -9)', () => {
  const rng = random(SEED);
  let pgHome: string;
  let home: string;
  let fleet: Fleet;
  let repoDir: string;
  let env: Record<string, string>;
  let repo: Repository;
  /** Chunks are read as a restore reads them (restore/read-block.ts): decoded and verified by this pool's worker. */
  let pool: BlockPool;
  const children = new Set<ChildProcess>();
  /** The raw disks' content (sha256 by path relative to the source) at each state; qcow2 files never change. */
  const states: Map<string, string>[] = [];
  /** The state each backup image was taken in (files change only between crash cases, never during one). */
  const stateOf = new Map<string, number>();
  /** Verified once: chunks and manifests are immutable once written (nothing here deletes any). */
  const verifiedChunks = new Set<string>();
  const verifiedManifests = new Set<string>();
  /** Chunk temp files killed writers left (not corruption: never read; sweeping them is another part's). */
  const tempFiles = new Set<string>();
  const figures = { backupKills: 0, backupKilledMidRun: 0, rebuildKills: 0, rebuildKilledMidRun: 0, serverKills: 0, imagesByKilledRuns: 0, unrecordedAfterCrash: 0, reconciled: 0, restoresVerified: 0, imagesContentVerified: 0, chunksVerified: 0, tempFilesLeft: 0, corrupt: 0, missingFromCatalog: 0 };
  const log = (line: string) => process.stdout.write(`crash: ${line}\n`);

  const sourceImages = () => path.join(fleet.libvirtDir, 'images');
  const rawDisks = async () => (await fs.readdir(sourceImages())).filter((f) => f.endsWith('.raw')).sort();
  const sha256 = async (file: string) => createHash('sha256').update(await fs.readFile(file)).digest('hex');
  const snapshot = async () => {
    const state = new Map<string, string>();
    for (const name of await rawDisks()) state.set(`images/${name}`, await sha256(path.join(sourceImages(), name)));
    states.push(state);
    return states.length - 1;
  };
  /** Changes one or two raw disks (the shared config disk among them): backups have blocks to read and store. */
  const mutate = async () => {
    const disks = await rawDisks();
    for (let n = 1 + Math.floor(rng() * 2); n > 0; n--) {
      const file = path.join(sourceImages(), disks[Math.floor(rng() * disks.length)]);
      const { size } = await fs.stat(file);
      const length = 4096 * (1 + Math.floor(rng() * 64));
      await overwrite(file, 4096 * Math.floor(rng() * ((size - length) / 4096)), length, Math.floor(rng() * 1e9));
    }
    return snapshot();
  };

  const listImages = () => repositoryImageIds(repoDir).catch(() => [] as string[]);
  const catalogImages = async () => {
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      return new Set((await client.query<{ id: string }>('SELECT "id" FROM "BackupImage"')).rows.map((r) => r.id));
    } finally {
      await client.end();
    }
  };
  /** Images that appeared since the last call, all taken in `state`. */
  const newImages = async (state: number) => {
    const fresh = (await listImages()).filter((id) => !stateOf.has(id));
    for (const id of fresh) stateOf.set(id, state);
    return fresh;
  };

  const spawnCli = (args: string[]) => {
    const started = Date.now();
    const child = spawn(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    const exit = new Promise<Exit>((resolve) => child.on('exit', (code, signal) => { children.delete(child); resolve({ code, signal, stderr, ms: Date.now() - started }); }));
    return { child, exit };
  };
  /** Runs a command and kill -9s it after `delay` ms; `killed`: it was still running then. */
  /**
   * When to strike: `ms` after the start, or `ms` after the run's `image`-th backup image appears in the
   * repository (aimed at the moments between writing an image and committing its record).
   */
  type KillPoint = { ms: number; image?: number; inTransaction?: boolean };
  const describePoint = (point: KillPoint) => (point.image ? `${point.ms} ms after its image ${point.image}` : point.inTransaction ? `${point.ms} ms into its transaction` : `at ${point.ms} ms`);
  const pickPoint = (i: number, durationMs: number): KillPoint => (i % 2 === 1
    ? { ms: killPoint(durationMs) }
    : { image: 1 + Math.floor(rng() * 3), ms: Math.floor(rng() * 40) });
  /** Waits for the kill point of a command started now (false: it ended before). */
  const reach = async (point: KillPoint, running: () => boolean) => {
    if (point.inTransaction) {
      // A rebuild is inside its transaction once it holds the index lock exclusively (lib/catalog/locks.ts).
      const client = new pg.Client({ connectionString: env.DATABASE_URL });
      await client.connect();
      try {
        const held = async () => (await client.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted AND objid = $1`, [CATALOG_INDEX_LOCK])).rows.length > 0;
        while (running() && !(await held())) await new Promise((resolve) => setTimeout(resolve, 3));
      } finally {
        await client.end();
      }
      await new Promise((resolve) => setTimeout(resolve, point.ms));
      return running();
    }
    if (!point.image) {
      await new Promise((resolve) => setTimeout(resolve, point.ms));
      return running();
    }
    const before = (await listImages()).length;
    while (running() && (await listImages()).length < before + point.image) await new Promise((resolve) => setTimeout(resolve, 3));
    await new Promise((resolve) => setTimeout(resolve, point.ms));
    return running();
  };
  /** Runs a command and kill -9s it at `point`; `killed`: it was still running then. */
  const runKilled = async (args: string[], point: KillPoint) => {
    const { child, exit } = spawnCli(args);
    const running = () => child.exitCode === null && child.signalCode === null;
    if (await reach(point, running)) child.kill('SIGKILL');
    const ended = await exit;
    return { ...ended, killed: ended.signal === 'SIGKILL' };
  };
  const timed = async (args: string[]) => {
    const ended = await spawnCli(args).exit;
    expect(ended.code, `${args.join(' ')}: ${ended.stderr}`).toBe(0);
    return ended.ms;
  };

  /**
   * The test's own server, run as a child of this process rather than daemonised by pg_ctl: when it is
   * killed, this process reaps it (a zombie postmaster would hold its postmaster.pid "alive" in a container
   * whose init does not reap). The cluster itself is made by the embedded catalog code.
   */
  let server: ChildProcess | undefined;
  const startServer = async () => {
    const { postgres } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
    const owner = process.getuid?.() === 0 ? { uid: Number((await run('id', ['-u', 'postgres'])).stdout), gid: Number((await run('id', ['-g', 'postgres'])).stdout) } : {};
    // syncfs: crash recovery syncs the data folder in one call, not file by file (seconds on this disk).
    server = spawn(postgres, ['-D', path.join(pgHome, 'catalog', 'pgdata'), '-c', 'recovery_init_sync_method=syncfs'], { ...owner, stdio: 'ignore', env: { ...process.env, LC_ALL: 'C' } });
    for (const end = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 100))) {
      const client = new pg.Client({ connectionString: env.DATABASE_URL });
      const ready = await client.connect().then(() => true, () => false);
      await client.end().catch(() => undefined);
      if (ready) return;
      if (Date.now() > end || server.exitCode !== null) throw new Error('the test\'s PostgreSQL did not start');
    }
  };
  /** kill -9 of the server: the postmaster and every backend at once, as a crash or the OOM killer leaves it. */
  const killServer = async () => {
    const postmaster = server!.pid!;
    const reaped = new Promise((resolve) => server!.once('exit', resolve));
    const pids = [postmaster];
    for (const entry of await fs.readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === postmaster) pids.push(Number(entry));
    }
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
    }
    await reaped;
    // Gone, or a zombie waiting for init to reap it (it holds no memory, no socket, no lock).
    const alive = async (pid: number) => {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    };
    for (const pid of pids) for (let i = 0; i < 200 && (await alive(pid)); i++) await new Promise((r) => setTimeout(r, 10));
  };

  /** A chunk file's block length, as its frame says: a raw frame holds the block, a zstd frame records its size. */
  const blockLengthOf = async (file: string) => {
    const frame = await fs.readFile(file);
    const length = frame[0] === CHUNK_RAW ? frame.length - 1 : frame[0] === CHUNK_ZSTD ? zstd.getFrameContentSize(frame.subarray(1)) : null;
    if (length === null || length < 1 || length > repo.config.blockSize) throw new Error(`its frame gives no block length (${length})`);
    return length;
  };
  /** The repository whole: every chunk re-hashes to its name, every manifest parses, and names only what exists. */
  const checkRepository = async () => {
    const problems: string[] = [];
    const chunksDir = path.join(repoDir, 'chunks');
    for (const entry of await fs.readdir(chunksDir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      if (entry.name.includes('.tmp-')) { tempFiles.add(entry.name); continue; }
      if (verifiedChunks.has(entry.name)) continue;
      try {
        const length = await blockLengthOf(path.join(entry.parentPath, entry.name));
        await readStoredBlock(repo, pool, parseChunkId(entry.name), length);
        verifiedChunks.add(entry.name);
      } catch (err) {
        problems.push(`chunk ${entry.name}: ${(err as Error).message}`);
      }
    }
    for (const digest of await storedDiskDigests(repo)) {
      if (verifiedManifests.has(digest)) continue;
      try {
        const manifest = await repo.getStoredDisk(digest);
        for (const file of manifest.files) {
          for (const block of file.blocks) if (block && !(await repo.hasChunk(block))) problems.push(`stored disk ${digest}: chunk ${block} is missing`);
        }
        if (manifest.parent && !(await repo.hasStoredDisk(manifest.parent.digest))) problems.push(`stored disk ${digest}: parent ${manifest.parent.digest} is missing`);
        verifiedManifests.add(digest);
      } catch (err) {
        problems.push(`stored disk ${digest}: ${(err as Error).message}`);
      }
    }
    for (const id of await listImages()) {
      if (verifiedManifests.has(id)) continue;
      try {
        const image = await repo.getBackupImage(id);
        for (const disk of image.disks) if (!(await repo.hasStoredDisk(disk.digest))) problems.push(`image ${id}: stored disk ${disk.digest} is missing`);
        verifiedManifests.add(id);
      } catch (err) {
        problems.push(`image ${id}: ${(err as Error).message}`);
      }
    }
    figures.corrupt += problems.length;
    figures.chunksVerified = verifiedChunks.size;
    figures.tempFilesLeft = tempFiles.size;
    expect(problems).toEqual([]);
  };
  const checkCatalog = async () => {
    const known = await catalogImages();
    const missing = (await listImages()).filter((id) => !known.has(id));
    figures.missingFromCatalog += missing.length;
    expect(missing, 'images in the repository that the catalog lacks').toEqual([]);
  };

  /** Restores a backup to a fresh folder and compares every file with the source as it was at that backup. */
  const verifyRestore = async (id: string) => {
    const image = (await storedImage(repoDir, id)).json as BackupImageManifest;
    const target = path.join(home, 'restores', id);
    const result = await cli(env, 'restore', image.vm.name, '--backup', id, '--target', target, '--policy', 'overwrite', '--confirm-drift', '--json');
    expect(result.code, `restore ${id}: ${result.stderr}`).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'restored', backupId: id });
    const restored = (await fs.readdir(path.join(target, 'images'))).map((name) => `images/${name}`).sort();
    expect(restored).toEqual(image.disks.map((d) => d.relativePath).sort());
    const state = states[stateOf.get(id)!];
    for (const rel of restored) {
      if (rel.endsWith('.raw')) expect(await sha256(path.join(target, rel)), `${id} ${rel}`).toBe(state.get(rel));
      else await qemuImg('compare', '-q', path.join(target, rel), path.join(fleet.libvirtDir, rel)); // qcow2: the chain's content (its backing link is rewritten)
    }
    expect((await fs.readFile(path.join(target, `${image.vm.name}.xml`))).equals(await fs.readFile(image.vm.configPath))).toBe(true);
    await fs.rm(target, { recursive: true });
    figures.restoresVerified++;
  };

  /**
   * Every image's stored content, byte for byte, against the source as it was when the image was taken:
   * each disk's bytes rebuilt from its chunks (in this process: cheap, a stored disk is checked once).
   */
  const contentChecked = new Map<string, string>();
  const liveHashes = new Map<string, string>();
  const verifyContent = async (id: string) => {
    const image = await repo.getBackupImage(id);
    const state = states[stateOf.get(id)!];
    for (const disk of image.disks) {
      let expected = state.get(disk.relativePath);
      if (!expected) {
        if (!liveHashes.has(disk.relativePath)) liveHashes.set(disk.relativePath, await sha256(path.join(fleet.libvirtDir, disk.relativePath)));
        expected = liveHashes.get(disk.relativePath)!; // qcow2 files never change here
      }
      if (contentChecked.get(disk.digest) === expected) continue;
      const stored = await repo.getStoredDisk(disk.digest);
      const hash = createHash('sha256');
      for (const [index, block] of stored.files[0].blocks.entries()) {
        const length = Math.min(stored.blockSize, stored.files[0].size - index * stored.blockSize);
        hash.update(block ? await readStoredBlock(repo, pool, block, length) : Buffer.alloc(length));
      }
      expect(hash.digest('hex'), `${id} ${disk.relativePath}`).toBe(expected);
      contentChecked.set(disk.digest, expected);
    }
    figures.imagesContentVerified++;
  };
  /**
   * Every image the crashed run finished has its content checked; restored through the CLI are all those
   * the crash left unrecorded (the catalog knows them only by reconciling) and one other, at random.
   */
  const verifyFinished = async (left: string[], unrecorded: string[]) => {
    for (const id of left) await verifyContent(id);
    const others = left.filter((id) => !unrecorded.includes(id));
    const toRestore = [...unrecorded, ...(others.length ? [others[Math.floor(rng() * others.length)]] : [])];
    for (const id of toRestore) await verifyRestore(id);
    return toRestore.length;
  };

  let startupMs = 0;
  let backupMs = 0;
  let rebuildMs = 0;
  /** A kill point: mostly inside the command's work (after its start-up: process, bundle, catalog connection), some before or after. */
  const killPoint = (durationMs: number) => Math.round(0.9 * startupMs + rng() * (1.05 * durationMs - 0.9 * startupMs));

  beforeAll(async () => {
    pgHome = await tempDir('vmdedup-crash-pg-');
    home = await tempDir('vmdedup-crash-');
    const [catalog, built] = await Promise.all([
      ensureEmbeddedCatalog(pgHome).then(async (made) => { await stopEmbeddedCatalog(pgHome); return made; }),
      buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 3, baseMiB: 8, cloneDeltaMiB: 1, configDiskMiB: 1, privateDiskMiB: 4, vmwareVms: 0, seed: SEED }),
    ]);
    fleet = built;
    repoDir = path.join(home, 'repository');
    env = { VMDEDUP_HOME: home, DATABASE_URL: catalog.url };
    await startServer();
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    const first = await snapshot();
    await timed(['backup']);
    repo = await Repository.open(new FsBlobStore(repoDir));
    pool = new BlockPool({ ids: repo.ids, blockSize: repo.config.blockSize, forRestore: true, threads: 1 });
    // Copies of the first images under new ids: a repository of a few hundred backups, so that a rebuild
    // takes long enough to be killed inside its transaction. They restore like their originals.
    const originals = await newImages(first);
    let at = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < 300; i++) {
      const created = new Date((at += 1000));
      const id = `${created.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
      const original = await repo.getBackupImage(originals[i % originals.length]);
      await repo.putBackupImage({ ...original, id, createdAt: created.toISOString() });
      stateOf.set(id, first);
    }
    rebuildMs = await timed(['catalog', 'rebuild']);
    startupMs = Math.min(await timed(['source', 'list']), await timed(['source', 'list']));
    await mutate();
    backupMs = await timed(['backup']);
    await newImages(states.length - 1);
    await checkCatalog();
    log(`seed ${SEED}; ${ITERATIONS} backup kills, ${ITERATIONS} rebuild kills, ${SERVER_ITERATIONS} server kills; start-up ${startupMs} ms, a backup ${backupMs} ms, a rebuild of ${(await listImages()).length} images ${rebuildMs} ms`);
  });

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    if (server && server.exitCode === null) {
      const stopped = new Promise((resolve) => server!.once('exit', resolve));
      server.kill('SIGINT'); // fast shutdown
      await stopped;
    }
    await pool?.close();
    log(`figures: ${JSON.stringify(figures)}`);
    for (const dir of [home, pgHome]) if (dir) await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  });

  /**
   * After a crash that left `left` (the new images; `byKilledRun`: a killed run finished them): the next backup
   * succeeds and records every one the catalog lacks, the repository and the catalog are whole, and they restore.
   */
  const recoverAfterCrash = async (state: Awaited<ReturnType<typeof mutate>>, left: string[], byKilledRun: boolean) => {
    const known = await catalogImages();
    const unrecorded = left.filter((id) => !known.has(id));
    if (byKilledRun) figures.imagesByKilledRuns += left.length;
    figures.unrecordedAfterCrash += unrecorded.length;
    const next = await cli(env, 'backup', '--json');
    expect(next.code, next.stderr).toBe(0);
    await newImages(state);
    await checkRepository();
    await checkCatalog();
    figures.reconciled += unrecorded.length;
    return { unrecorded, restored: await verifyFinished(byKilledRun ? left : [], unrecorded) };
  };

  it(`kill -9 of backup at ${ITERATIONS} random points: the next backup records what it left, nothing is corrupt`, async () => {
    for (let i = 1; i <= ITERATIONS; i++) {
      const state = await mutate();
      const point = pickPoint(i, backupMs);
      const killed = await runKilled(['backup', '--json'], point);
      figures.backupKills++;
      if (killed.killed) figures.backupKilledMidRun++;
      // The images the killed run finished (a run the kill came too late for is an ordinary one).
      const left = await newImages(state);
      const { unrecorded, restored } = await recoverAfterCrash(state, left, killed.killed);
      // The next run's own backups are ordinary ones: their content is checked, one in four is restored.
      const ordinary = (await listImages()).filter((id) => stateOf.get(id) === state && !(killed.killed && left.includes(id)));
      for (const id of ordinary) await verifyContent(id);
      if (i % 4 === 0) await verifyRestore(ordinary[Math.floor(rng() * ordinary.length)]);
      log(`backup ${i}/${ITERATIONS}: kill ${describePoint(point)} ${killed.killed ? `mid-run; it had finished ${left.length} images, ${unrecorded.length} unrecorded` : `after it ended (exit ${killed.code})`}; next backup ok; content of ${left.length + ordinary.length} images checked, ${restored + (i % 4 === 0 ? 1 : 0)} restored byte-identical`);
    }
  });

  it(`kill -9 of catalog rebuild at ${ITERATIONS} random points: the catalog is never partial`, async () => {
    const nextCommands = [['stats', '--json'], ['catalog', 'rebuild'], ['backup', '--json']];
    for (let i = 1; i <= ITERATIONS; i++) {
      const point: KillPoint = i % 2 === 1 ? { ms: killPoint(rebuildMs) } : { inTransaction: true, ms: Math.floor(rng() * Math.max(50, rebuildMs - startupMs)) };
      const killed = await runKilled(['catalog', 'rebuild'], point);
      figures.rebuildKills++;
      if (killed.killed) figures.rebuildKilledMidRun++;
      // Right after the kill, before anything else runs: the old index or the new one, whole.
      await checkCatalog();
      const nextCommand = nextCommands[Math.floor(rng() * nextCommands.length)];
      const next = await cli(env, ...nextCommand);
      expect(next.code, next.stderr).toBe(0);
      await newImages(states.length - 1);
      await checkRepository();
      await checkCatalog();
      log(`rebuild ${i}/${ITERATIONS}: kill ${describePoint(point)} ${killed.killed ? 'mid-run' : `after it ended (exit ${killed.code})`}; catalog whole; next '${nextCommand[0]}' ok`);
    }
  });

  it(`kill -9 of the PostgreSQL server during ${SERVER_ITERATIONS} backups: every image it had written is recorded by the next backup`, async () => {
    for (let i = 1; i <= SERVER_ITERATIONS; i++) {
      const state = await mutate();
      const point = i % 2 === 1 ? { ms: Math.round(startupMs + rng() * (backupMs - startupMs) * 0.9) } : { image: 1 + Math.floor(rng() * 3), ms: Math.floor(rng() * 40) };
      const { child, exit } = spawnCli(['backup', '--json']);
      await reach(point, () => child.exitCode === null && child.signalCode === null);
      await killServer();
      figures.serverKills++;
      const ended = await exit;
      await startServer(); // crash recovery: commits not yet flushed are gone
      const left = await newImages(state);
      const { unrecorded, restored } = await recoverAfterCrash(state, left, true);
      log(`server ${i}/${SERVER_ITERATIONS}: killed ${describePoint(point)} (the backup exited ${ended.code ?? ended.signal}); it had written ${left.length} images, ${unrecorded.length} unrecorded after the restart; next backup ok; content checked, ${restored} restored byte-identical`);
    }
  });
});
