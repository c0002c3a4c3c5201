/**
 * A small libvirt fleet of raw disks made of 1 MiB blocks named by tokens (equal tokens, equal blocks: shared chunks
 * across VMs and backups), with a real catalog and a repository on disk, for the retention, gc and verify tests;
 * and the bytes of a backup's disks as a restore reads them.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { BlockPool } from '../lib/engine/chunking/block-pool';
import type { BlobStore } from '../lib/engine/repository/blob-store';
import type { ChunkId } from '../lib/engine/repository/chunk-id';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import { Repository } from '../lib/engine/repository/repository';
import { runBackup } from '../lib/services/backups/run-backup';
import { addSource } from '../lib/services/sources/add-source';
import { createMigratedCatalog, libvirtDomainXml, readStoredBlock, tempDir } from './helpers';

export const MiB = 1024 * 1024;

/** A block's bytes from a token (xorshift over the token): equal tokens, equal blocks. */
export function block(token: number): Buffer {
  const words = new Uint32Array(MiB / 4);
  let x = (token * 2654435761) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer);
}

/** SHA-256 of the disk made of these blocks. */
export const sha = (tokens: number[]) => tokens.reduce((hash, token) => hash.update(block(token)), createHash('sha256')).digest('hex');
export const chunkIdOf = (token: number) => createHash('sha256').update(block(token)).digest('hex');
export const chunkKeyOf = (token: number) => { const id = chunkIdOf(token); return `chunks/${id.slice(0, 2)}/${id}`; };

export type Hooks = Partial<Record<'has' | 'put' | 'get' | 'size' | 'delete' | 'list', (key: string) => Promise<void> | void>>;
export type TokenFleet = {
  sql: pg.Pool; db: PrismaClient; dir: string; repo: Repository; store: FsBlobStore; pool: BlockPool;
  /** The same repository through a store that calls `hooks` (which may wait) before the chosen operations. */
  hooked: Repository; hooks: Hooks;
  /** The same repository through `wrap` (setup's option), else `hooked`. */
  wrapped: Repository;
};

const cleanups: (() => Promise<unknown>)[] = [];
/** Ends every fleet's connections and block pools (a test file's afterAll). */
export async function closeTokenFleets(): Promise<void> {
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => undefined);
}

/**
 * VMs `vms[i]` with a private disk of tokens i·10+1, i·10+2, i·10+3 (and with `common`, a disk common.raw of tokens
 * 900, 901 every VM attaches), in source 'fleet'.
 */
export async function tokenFleet(vms: string[], options: { common?: boolean; wrap?: (store: BlobStore) => BlobStore } = {}): Promise<TokenFleet> {
  const { url, db } = await createMigratedCatalog();
  const sql = new pg.Pool({ connectionString: url, max: 6 });
  sql.on('error', () => undefined);
  cleanups.push(() => sql.end(), () => db.$disconnect());
  const dir = await tempDir();
  await fs.mkdir(path.join(dir, 'fleet'));
  if (options.common) await writeDisk(dir, 'common', [900, 901]);
  for (const [index, vm] of vms.entries()) {
    await writeDisk(dir, vm, [index * 10 + 1, index * 10 + 2, index * 10 + 3]);
    const disks = [{ file: `${vm}.raw` }, ...(options.common ? [{ file: 'common.raw' }] : [])];
    await fs.writeFile(path.join(dir, 'fleet', `${vm}.xml`), libvirtDomainXml(vm, `00000000-0000-4000-8000-${String(index).padStart(12, '0')}`, disks));
  }
  await addSource(sql, { name: 'fleet', type: 'libvirt', path: path.join(dir, 'fleet') });
  const store = new FsBlobStore(path.join(dir, 'repository'));
  const repo = await Repository.openOrInit(store, { blockSize: MiB });
  const hooks: Hooks = {};
  const hooked = await Repository.open(hookedStore(store, hooks));
  const wrapped = options.wrap ? await Repository.open(options.wrap(store)) : hooked;
  const pool = new BlockPool({ ids: repo.ids, zstdLevel: repo.config.compression.level, blockSize: MiB, threads: 1, forRestore: true });
  cleanups.push(() => pool.close());
  return { sql, db, dir, repo, store, pool, hooked, hooks, wrapped };
}

/** The repository through a store that calls `hooks` (which may wait) before the chosen operations. */
export function hookedRepository(store: FsBlobStore, hooks: Hooks): Promise<Repository> {
  return Repository.open(hookedStore(store, hooks));
}

function hookedStore(store: FsBlobStore, hooks: Hooks): BlobStore {
  const before = async (op: keyof Hooks, key: string) => { await hooks[op]?.(key); };
  return {
    location: store.location,
    has: async (key: string) => { await before('has', key); return store.has(key); },
    put: async (key: string, data: Uint8Array) => { await before('put', key); return store.put(key, data); },
    get: async (key: string) => { await before('get', key); return store.get(key); },
    size: async (key: string) => { await before('size', key); return store.size(key); },
    delete: async (key: string) => { await before('delete', key); return store.delete(key); },
    list: (prefix: string) => (async function* () { await before('list', prefix); yield* store.list(prefix); })(),
    flush: () => store.flush(),
    freeBytes: () => store.freeBytes(),
    readInto: (key: string, target: Uint8Array) => store.readInto(key, target),
    sweepTemporaryFiles: () => store.sweepTemporaryFiles(),
  };
}

let mtimeStep = 0;

/** Writes fleet/<name>.raw from tokens, with a fresh mtime second in the past (a version token from the future is never
 *  trusted, which would keep the fast path out of every test; a fresh second keeps new content from passing for old). */
export async function writeDisk(dir: string, name: string, tokens: number[]): Promise<void> {
  const file = path.join(dir, 'fleet', `${name}.raw`);
  const handle = await fs.open(file, 'w');
  try {
    for (const [i, token] of tokens.entries()) await handle.write(block(token), 0, MiB, i * MiB);
  } finally {
    await handle.close();
  }
  const earlier = new Date(Date.now() - 30 * 86_400_000 + ++mtimeStep * 1000);
  await fs.utimes(file, earlier, earlier);
}

/** The SHA-256 of every disk of a backup (by file name without .raw), rebuilt from the repository as a restore reads it. */
export async function restoredDigests(fleet: Pick<TokenFleet, 'repo' | 'pool'>, backupId: string): Promise<Map<string, string>> {
  const image = await fleet.repo.getBackupImage(backupId);
  const result = new Map<string, string>();
  for (const disk of image.disks) {
    const stored = await fleet.repo.getStoredDisk(disk.digest);
    const hash = createHash('sha256');
    const [file] = stored.files;
    for (const [index, id] of file.blocks.entries()) {
      const length = Math.min(stored.blockSize, file.size - index * stored.blockSize);
      hash.update(id ? await readStoredBlock(fleet.repo, fleet.pool, id as ChunkId, length) : Buffer.alloc(length));
    }
    result.set(path.basename(disk.path, '.raw'), hash.digest('hex'));
  }
  return result;
}

/** A backup of every VM that must not fail. */
export async function backup(fleet: TokenFleet, repo = fleet.repo) {
  const report = await runBackup(fleet.sql, { repo, rereadAfterDays: 30 });
  expect(report.failures, JSON.stringify(report.failures)).toEqual([]);
  return report;
}
