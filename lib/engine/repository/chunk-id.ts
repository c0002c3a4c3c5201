import { createHash } from 'node:crypto';

/** Hex SHA-256 of a block's plain bytes. */
export type ChunkId = string & { readonly __brand: 'ChunkId' };

export function hashChunk(data: Uint8Array): ChunkId {
  return createHash('sha256').update(data).digest('hex') as ChunkId;
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
