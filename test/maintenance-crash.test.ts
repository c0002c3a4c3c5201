/**
 * Backups, prunes and garbage collections run at once through the real CLI, in a bounded seeded loop, with random
 * kill -9 of any of them (issue 12, "Tests"). Afterwards every image left in the repository restores (every chunk
 * re-hashes to its id), and every backup whose run finished restores byte for byte to the disk as it was then.
 * VMDEDUP_GC_CRASH_SEED (default 12) and VMDEDUP_GC_CRASH_ROUNDS (default 8) run other or more cases.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockPool } from '../lib/engine/chunking/block-pool';
import type { ChunkId } from '../lib/engine/repository/chunk-id';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import { Repository } from '../lib/engine/repository/repository';
import { cli, createTestDatabase, libvirtDomainXml, projectRoot, readStoredBlock, seededRandom, tempDir } from './helpers';
import { MiB, block, sha } from './token-fleet';

const SEED = Number(process.env.VMDEDUP_GC_CRASH_SEED ?? 12);
const ROUNDS = Number(process.env.VMDEDUP_GC_CRASH_ROUNDS ?? 8);
const BLOCKS = 4;

describe('backups, prune and gc at once, with kill -9', () => {
  const children = new Set<ChildProcess>();
  afterAll(() => { for (const child of children) child.kill('SIGKILL'); });

  it(`seed ${SEED}, ${ROUNDS} rounds: every image left restores, every finished backup byte for byte`, async () => {
    const random = seededRandom(SEED);
    const home = await tempDir();
    const fleet = path.join(home, 'fleet');
    await fs.mkdir(fleet);
    const env = { VMDEDUP_HOME: path.join(home, 'home'), DATABASE_URL: await createTestDatabase() };
    const vms = ['v0', 'v1', 'v2'];
    const tokens: Record<string, number[]> = {};
    const history: Record<string, number[][]> = {};
    let clock = Date.now() + 60_000;
    const writeDisk = async (vm: string) => {
      const file = path.join(fleet, `${vm}.raw`);
      const handle = await fs.open(file, 'w');
      for (const [i, token] of tokens[vm].entries()) await handle.write(block(token), 0, MiB, i * MiB);
      await handle.close();
      clock += 5000; // a new mtime each time: the fast path must not take new content for old
      await fs.utimes(file, new Date(clock), new Date(clock));
    };
    for (const [n, vm] of vms.entries()) {
      tokens[vm] = Array.from({ length: BLOCKS }, (_, i) => n * 100 + i + 1);
      history[vm] = [[...tokens[vm]]];
      await writeDisk(vm);
      await fs.writeFile(path.join(fleet, `${vm}.xml`), libvirtDomainXml(vm, `00000000-0000-4000-8000-00000000000${n}`, [{ file: `${vm}.raw` }]));
    }
    expect((await cli(env, 'source', 'add', 'fleet', '--type', 'libvirt', '--path', fleet)).code).toBe(0);
    expect((await cli(env, 'backup')).code).toBe(0);

    const start = (args: string[]) => {
      const child = spawn(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d) => { stdout += d; });
      child.stderr!.on('data', (d) => { stderr += d; });
      const exit = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) => child.on('exit', (code, signal) => {
        children.delete(child);
        resolve({ code, signal, stdout, stderr });
      }));
      return { child, exit };
    };

    /** backup id → vm and the sha its disk had. */
    const expected = new Map<string, { vm: string; sha: string }>();
    const tally = { kills: 0, backups: 0, prunes: 0, gcs: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      for (const vm of vms) {
        if (random() < 0.4) continue;
        const i = Math.floor(random() * BLOCKS);
        const past = history[vm][Math.max(0, history[vm].length - 2 - Math.floor(random() * 2))];
        tokens[vm][i] = random() < 0.4 ? 10_000 + round * 10 + i : past[i];
        history[vm].push([...tokens[vm]]);
        await writeDisk(vm);
      }
      const shas = Object.fromEntries(vms.map((vm) => [vm, sha(tokens[vm])]));
      // Prune and gc start at random moments of the backup: gc then meets it before, during or after its reuses.
      const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      const backupRun = start(['backup', '--json']);
      await later(Math.floor(random() * 600));
      const pruneRun = start(['prune', '--keep-last', String(1 + Math.floor(random() * 2)), '--json']);
      await later(Math.floor(random() * 600));
      const runs = [
        { kind: 'backup', run: backupRun },
        { kind: 'prune', run: pruneRun },
        { kind: 'gc', run: start(['gc', '--wait', '120', '--json']) },
      ];
      const victim = random() < 0.7 ? runs[Math.floor(random() * runs.length)] : undefined;
      if (victim) setTimeout(() => { if (victim.run.child.exitCode === null) { victim.run.child.kill('SIGKILL'); tally.kills++; } }, 300 + Math.floor(random() * 1500));
      for (const { kind, run } of runs) {
        const exit = await run.exit;
        if (exit.signal === 'SIGKILL') continue;
        expect(exit.code, `${kind} round ${round}: ${exit.stderr}`).toBe(0);
        if (kind === 'backup') {
          tally.backups++;
          for (const b of (JSON.parse(exit.stdout) as { backups: { vm: string; backupId: string }[] }).backups) expected.set(b.backupId, { vm: b.vm, sha: shas[b.vm] });
        } else if (kind === 'prune') tally.prunes++;
        else tally.gcs++;
      }
    }
    expect((await cli(env, 'gc', '--json')).code).toBe(0);

    const repo = await Repository.open(new FsBlobStore(path.join(env.VMDEDUP_HOME, 'repository')));
    const pool = new BlockPool({ ids: repo.ids, blockSize: repo.config.blockSize, threads: 1, forRestore: true });
    let checked = 0;
    try {
      for (const id of await repo.backupImageIds()) {
        const image = await repo.getBackupImage(id);
        for (const disk of image.disks) {
          const stored = await repo.getStoredDisk(disk.digest);
          const hash = createHash('sha256');
          const [file] = stored.files;
          for (const [index, chunk] of file.blocks.entries()) {
            const length = Math.min(stored.blockSize, file.size - index * stored.blockSize);
            hash.update(chunk ? await readStoredBlock(repo, pool, chunk as ChunkId, length) : Buffer.alloc(length));
          }
          const want = expected.get(id);
          if (want) {
            expect(hash.digest('hex'), `${id} ${want.vm}`).toBe(want.sha);
            checked++;
          }
        }
      }
    } finally {
      await pool.close();
    }
    console.log(`gc crash test: seed ${SEED}, ${ROUNDS} rounds, ${tally.kills} kills, ${tally.backups} backups, ${tally.prunes} prunes, ${tally.gcs} collections finished; ${checked} images checked byte for byte`);
    expect(checked).toBeGreaterThanOrEqual(vms.length);
    // verify agrees: nothing is damaged.
    const verify = await cli(env, 'verify', '--json');
    expect(verify.code, verify.stderr).toBe(0);
    expect((JSON.parse(verify.stdout) as { damaged: unknown[] }).damaged).toEqual([]);
  }, 600_000);
});
