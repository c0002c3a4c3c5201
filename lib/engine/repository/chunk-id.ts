import { createHash, createHmac } from 'node:crypto';

/** Hex id of a block's plain bytes: its SHA-256, or in an encrypted repository its HMAC-SHA256 (see ChunkIdScheme). */
export type ChunkId = string & { readonly __brand: 'ChunkId' };

/**
 * How a repository names blocks. A plain repository by their SHA-256; an encrypted one by HMAC-SHA256 under a key
 * derived from its master key, so that dedup works inside the repository while an id tells nothing about the bytes
 * (no one can test whether a repository holds a block they know). Worker threads get the scheme as data.
 */
export type ChunkIdScheme = { algorithm: 'sha256' } | { algorithm: 'hmac-sha256'; key: Uint8Array };

export const SHA256_IDS: ChunkIdScheme = { algorithm: 'sha256' };

export function chunkIdOf(scheme: ChunkIdScheme, data: Uint8Array): ChunkId {
  const hash = scheme.algorithm === 'sha256' ? createHash('sha256') : createHmac('sha256', scheme.key);
  return hash.update(data).digest('hex') as ChunkId;
}

/** Hex SHA-256 of a block's plain bytes (a plain repository's id). */
export function hashChunk(data: Uint8Array): ChunkId {
  return chunkIdOf(SHA256_IDS, data);
}

const zeroIds = new WeakMap<ChunkIdScheme, Map<number, ChunkId>>();

/** The id an all-zero block of `length` bytes would have (a stored disk's digest counts zero blocks by it). */
export function zeroBlockId(scheme: ChunkIdScheme, length: number): ChunkId {
  let byLength = zeroIds.get(scheme);
  if (!byLength) zeroIds.set(scheme, (byLength = new Map()));
  let id = byLength.get(length);
  if (!id) {
    id = chunkIdOf(scheme, Buffer.alloc(length));
    byLength.set(length, id);
  }
  return id;
}

export function parseChunkId(value: string): ChunkId {
  if (!/^[0-9a-f]{64}$/.test(value)) throw new Error(`invalid chunk id '${value}'`);
  return value as ChunkId;
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

/**
 * chunks/ab/abcd…: one level of 256 folders. A second level (chunks/ab/cd/) made nearly every new chunk
 * create a folder until a repository holds millions of chunks, which measured as a third of the metadata
 * system calls of a first backup; 256 folders keep each under ~4,000 entries per million chunks.
 */
export function chunkKey(id: ChunkId): string {
  return `chunks/${id.slice(0, 2)}/${id}`;
}
