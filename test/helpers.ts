import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { migrate } from '../lib/catalog/migrate';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../lib/generated/prisma/client';
import type { BlockPool } from '../lib/engine/chunking/block-pool';
import type { ChunkId } from '../lib/engine/repository/chunk-id';
import { type Repository, newBackupImageId } from '../lib/engine/repository/repository';
import { packedImageId } from '../lib/engine/repository/image-pack';
import { type BackupImageManifest, MANIFEST_FORMAT_VERSION } from '../lib/engine/repository/manifests';
import { readBlock } from '../lib/engine/restore/read-block';
import { createTestDatabase } from './scratch';

export const run = promisify(execFile);

export { canMountTmpfs, createTestDatabase, mountTmpfs, remountTmpfs, tempDir, unmountTmpfs } from './scratch';
export const projectRoot = path.resolve(import.meta.dirname, '..');

export async function createMigratedCatalog(): Promise<{ url: string; db: PrismaClient }> {
  const url = await createTestDatabase();
  await migrate(url, path.join(projectRoot, 'prisma', 'migrations'));
  return { url, db: new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) }) };
}

export async function qemuImg(...args: string[]): Promise<string> {
  const { stdout } = await run('qemu-img', args);
  return stdout;
}

/** xorshift32: a small seeded generator of 32-bit words, the same sequence on every machine (a failing seed replays). */
export function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state;
  };
}

/** xorshift32 as numbers in [0, 1), for seeded random choices. */
export function seededRandom(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 2 ** 32;
}

/** Bytes that compress about 2:1 like real VM data: random runs mixed with text-like runs. */
export function semiCompressible(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  const next = xorshift32(seed);
  for (let offset = 0; offset < size; offset += 4096) {
    const end = Math.min(size, offset + 4096);
    if (next() % 2 === 0) {
      for (let i = offset; i < end; i += 4) out.writeUInt32LE(next(), i);
    } else {
      const word = `log line ${next() % 1000} status=ok `;
      for (let i = offset; i < end; i++) out[i] = word.charCodeAt((i - offset) % word.length);
    }
  }
  return out;
}

export type CliResult = { code: number; stdout: string; stderr: string };

/** Runs the real CLI (bin/vmdedup.mjs) in a child process. */
export async function cli(env: Record<string, string>, ...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), ...args], {
      env: { ...process.env, ...env }, cwd: projectRoot, maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** SHA-256 (hex) of a file's bytes. */
export async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

/** Every file under `dir` (relative name → SHA-256; a symlink → its target): what "nothing else changed" is checked against. */
export async function snapshotTree(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (entry.isFile()) files.set(path.relative(dir, full), await sha256File(full));
    else if (entry.isSymbolicLink()) files.set(path.relative(dir, full), `-> ${await fs.readlink(full)}`);
  }
  return files;
}

/** Names whose content differs between two snapshots (added, removed or changed), sorted. */
export function changedFiles(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...new Set([...before.keys(), ...after.keys()])].filter((name) => before.get(name) !== after.get(name)).sort();
}

/** A libvirt domain XML as tests write it: file-backed disks in slots vda, vdb, … (`type: null` leaves out the driver). */
export function libvirtDomainXml(name: string, uuid: string, disks: { file: string; type?: string | null; dev?: string }[]): string {
  const slots = disks.map((d, i) => `<disk type='file' device='disk'>${d.type === null ? '' : `<driver name='qemu' type='${d.type ?? 'raw'}'/>`}<source file='${d.file}'/><target dev='${d.dev ?? `vd${String.fromCharCode(97 + i)}`}'/></disk>`);
  return `<domain type='kvm'><name>${name}</name><uuid>${uuid}</uuid><devices>\n${slots.join('\n')}\n</devices></domain>\n`;
}

/** Reads one stored chunk the way a restore does (restore/read-block.ts: read, decoded and verified by a worker). */
export async function readStoredBlock(repo: Repository, pool: BlockPool, id: ChunkId, length: number): Promise<Buffer> {
  const slot = await pool.acquire(length);
  try {
    await readBlock(repo, pool, slot, id);
    return Buffer.from(slot.bytes);
  } finally {
    pool.release(slot);
  }
}

/** Checks that every chunk each stored disk names is in the repository; returns how many were checked. */
export async function manifestsAreComplete(repo: Repository): Promise<number> {
  let checked = 0;
  for (const digest of await storedDiskDigests(repo)) {
    const manifest = await repo.getStoredDisk(digest);
    for (const file of manifest.files) for (const id of file.blocks) if (id) { expect(await repo.hasChunk(id)).toBe(true); checked++; }
  }
  return checked;
}

/** The digests of a repository's stored disks, from its blob store's listing (`disks/<digest>.json`). */
export async function storedDiskDigests(repo: Repository): Promise<string[]> {
  const digests: string[] = [];
  for await (const page of repo.store.list('disks/')) {
    for (const key of page) {
      const match = /^disks\/([0-9a-f]{64})\.json$/.exec(key);
      if (match) digests.push(match[1]);
    }
  }
  return digests;
}

/** The pid of a process that has exited (a writer killed with -9, as the sweeps see it). */
export async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

/** The ids of the backup images a repository folder holds (packed or each a file of its own), as its listing says. */
export async function repositoryImageIds(repoDir: string): Promise<string[]> {
  const { FsBlobStore } = await import('../lib/engine/repository/fs-blob-store');
  const { Repository: Repo } = await import('../lib/engine/repository/repository');
  return (await Repo.open(new FsBlobStore(repoDir))).backupImageIds();
}

/**
 * One backup image as the repository folder stores it, to read and to tamper with as a damaged disk or an attacker
 * would: `json` is the manifest as stored (not checked), `save` stores another value in its place (in its pack, for a
 * packed image: the pack is written again), `restore` puts the stored bytes back as they were.
 */
export async function storedImage(repoDir: string, id: string): Promise<{ json: Record<string, any>; save(value: unknown): Promise<void>; restore(): Promise<void> }> {
  const { parsePackedImageId } = await import('../lib/engine/repository/image-pack');
  const packed = parsePackedImageId(id);
  const dir = path.join(repoDir, 'images');
  const file = packed ? path.join(dir, (await fs.readdir(dir)).find((name) => name.startsWith(`${packed.packId}.`) && name.endsWith('.pack'))!) : path.join(dir, `${id}.json`);
  const original = await fs.readFile(file);
  const zstd = (await import('zstd-napi')).default;
  const pack = packed ? JSON.parse(zstd.decompress(original).toString('utf8')) as { images: unknown[] } : undefined;
  const json = structuredClone((pack ? pack.images[packed!.index] : JSON.parse(original.toString('utf8'))) as Record<string, any>);
  return {
    json,
    save: async (value) => {
      if (!pack) return fs.writeFile(file, JSON.stringify(value));
      const images = [...pack.images];
      images[packed!.index] = value;
      await fs.writeFile(file, zstd.compress(Buffer.from(JSON.stringify({ ...pack, images }))));
    },
    restore: () => fs.writeFile(file, original),
  };
}

/** A backup image with no disks, as the repository's image tests store them. */
export function bareImage(id: string, vm: string): BackupImageManifest {
  return {
    formatVersion: MANIFEST_FORMAT_VERSION, id, createdAt: new Date().toISOString(),
    source: { name: 'pool', type: 'libvirt', path: '/src' },
    vm: { name: vm, uuid: '', configPath: `/src/${vm}.xml`, relativeConfigPath: `${vm}.xml`, configBase64: Buffer.from(`<domain>${vm}</domain>`).toString('base64') },
    disks: [], totals: { logicalBytes: 0, bytesRead: 0, bytesWritten: 0, bytesReferenced: 0 },
  };
}

/** The members of one new image pack: `count` bare images (vm0, vm1, …). */
export function bareImagePack(count: number, at = new Date()): BackupImageManifest[] {
  const packId = newBackupImageId(at);
  return Array.from({ length: count }, (_, index) => bareImage(packedImageId(packId, index), `vm${index}`));
}
