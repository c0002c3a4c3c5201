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

/** chunks/ab/cd/abcd…: two levels of 256 folders keep any one folder small. */
export function chunkKey(id: ChunkId): string {
  return `chunks/${id.slice(0, 2)}/${id.slice(2, 4)}/${id}`;
}
