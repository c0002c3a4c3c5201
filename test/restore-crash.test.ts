/**
 * kill -9 of the CLI at random points of a restore (seeded, bounded): never a half-written file under a final name,
 * never a file of another VM changed, and running the same restore again gives the backed-up VM. More iterations
 * with VMDEDUP_CRASH_ITERATIONS; the seed is VMDEDUP_CRASH_SEED (printed).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, buildFleet, overwrite } from '../lib/demo/fleet';
import { cli, createTestDatabase, projectRoot, qemuImg, seededRandom, sha256File, snapshotTree, tempDir } from './helpers';

const ITERATIONS = Number(process.env.VMDEDUP_CRASH_ITERATIONS ?? 8);
const SEED = Number(process.env.VMDEDUP_CRASH_SEED ?? 1);

const sha = sha256File;

const snapshot = snapshotTree;

describe('restore under kill -9', () => {
  let home: string;
  let env: Record<string, string>;
  let fleet: Fleet;
  let images: string;
  let original: Map<string, string>;

  beforeAll(async () => {
    home = await tempDir();
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 2, baseMiB: 16, configDiskMiB: 4, privateDiskMiB: 16, vmwareVms: 0 });
    images = path.join(fleet.libvirtDir, 'images');
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase(), VMDEDUP_DIRECT_IO: '0' };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(env, 'backup')).code).toBe(0);
    original = await snapshot(fleet.libvirtDir);
  });

  /** Starts a restore, waits until it has begun writing (`started()`), then kills it with SIGKILL after `delayMs`. */
  async function killedRestore(args: string[], started: () => Promise<boolean>, delayMs: number): Promise<void> {
    const child = spawn(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), ...args], { env: { ...process.env, ...env }, stdio: 'ignore' });
    let done = false;
    const exited = new Promise<void>((resolve) => child.on('exit', () => { done = true; resolve(); }));
    while (!done && !(await started())) await new Promise((resolve) => setTimeout(resolve, 2));
    const timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    await exited;
    clearTimeout(timer);
  }
  const exists = (file: string) => fs.access(file).then(() => true, () => false);
  const hasTemp = async (dir: string) => (await fs.readdir(dir).catch(() => [] as string[])).some((name) => name.includes('.vmdedup-'));

  it(`leaves nothing half-written and restores on the next run (seed ${SEED}, ${ITERATIONS} iterations)`, async () => {
    const next = seededRandom(SEED);
    // How long a whole restore takes here: kills are spread over it.
    const started = Date.now();
    expect((await cli(env, 'restore', 'vm01', '--target', path.join(home, 'timing'))).code).toBe(0);
    const span = Date.now() - started;
    let killedMidway = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const inPlace = i % 2 === 1;
      const delay = Math.floor(next() * span * 0.6);
      const vm = next() < 0.5 ? 'vm01' : 'vm02';
      const target = path.join(home, 'out', `run-${i}`);
      if (inPlace) await overwrite(path.join(images, `${vm}-data.raw`), 0, 1 << 20, i + 1); // the VM wrote since the backup
      const before = await snapshot(fleet.libvirtDir);
      const args = inPlace ? ['restore', vm, '--in-place'] : ['restore', vm, '--target', target];
      await killedRestore(args, () => (inPlace ? hasTemp(images) : exists(path.join(target, '.vmdedup-restore.json'))), delay);

      // Killed at any point: every file under a final name is whole — the old one or the backed-up one.
      const after = await snapshot(fleet.libvirtDir);
      for (const [file, digest] of after) {
        if (/^\..*\.vmdedup-\d+-[0-9a-f]{8}$/.test(path.basename(file))) continue; // a temp name, swept by the next run
        expect([before.get(file), original.get(file)], `iteration ${i} (${args.join(' ')}, killed after ${delay} ms): ${file}`).toContain(digest);
      }
      if (!inPlace) {
        const left = await fs.readdir(target, { recursive: true }).catch(() => [] as string[]);
        for (const name of left.filter((f) => /\.(raw|qcow2)$/.test(f) && !path.basename(f).startsWith('.'))) {
          const source = path.join(fleet.libvirtDir, name);
          if (name.endsWith('.raw')) expect(await sha(path.join(target, name)), `iteration ${i}: ${name}`).toBe(original.get(path.relative(fleet.libvirtDir, source)));
        }
      }
      // A folder restore killed before it finished leaves its marker; one that finished first leaves none.
      const unfinished = !inPlace && (await exists(path.join(target, '.vmdedup-restore.json')));
      const finished = !inPlace && !unfinished && (await exists(target));
      if (unfinished) killedMidway++;

      // The same restore again completes (a finished folder restore is refused: its folder is not empty), and the
      // result is the backed-up VM.
      const again = await cli(env, ...args, '--json');
      if (finished) expect(again.stderr, `iteration ${i} rerun`).toMatch(/target folder is not empty/);
      else expect(again.code, `iteration ${i} rerun: ${again.stderr}`).toBe(0);
      if (inPlace) {
        const now = await snapshot(fleet.libvirtDir);
        for (const [file, digest] of now) {
          if (file.startsWith('.') || path.basename(file).startsWith('.')) throw new Error(`iteration ${i}: left ${file}`);
          const mine = file === `images/${vm}-data.raw` || file === `images/${vm}.qcow2` || file === `${vm}.xml`;
          expect(digest, `iteration ${i}: ${file}`).toBe(mine ? original.get(file) : before.get(file));
        }
      } else {
        expect(await sha(path.join(target, 'images', `${vm}-data.raw`))).toBe(original.get(`images/${vm}-data.raw`));
        await qemuImg('check', path.join(target, 'images', `${vm}.qcow2`));
        await qemuImg('compare', path.join(target, 'images', `${vm}.qcow2`), path.join(images, `${vm}.qcow2`));
        expect((await fs.readdir(target, { recursive: true })).filter((f) => path.basename(f).startsWith('.'))).toEqual([]);
      }
    }
    console.log(`restore crash test: seed ${SEED}, ${ITERATIONS} kills, ${killedMidway} folder restores of them killed mid-restore, 0 mismatches`);
    expect(killedMidway).toBeGreaterThan(0);
  });
});
