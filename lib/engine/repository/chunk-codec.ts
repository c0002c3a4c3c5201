import { Decompressor } from 'zstd-napi';
import zstd from 'zstd-napi/binding.js';

/**
 * A stored chunk is a frame: one encoding byte, then the payload (zstd frame, or the plain bytes when zstd
 * does not shrink them).
 */
export const CHUNK_RAW = 0;
export const CHUNK_ZSTD = 1;

/**
 * Encodes in place: `frame` holds one free byte followed by `length` plain bytes; afterwards it holds the
 * stored frame, whose length is returned. Reuses one scratch buffer: nothing is allocated per block.
 */
export type ChunkEncoder = (frame: Uint8Array, length: number) => number;

export function createChunkEncoder(level: number): ChunkEncoder {
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, level);
  let scratch = Buffer.alloc(0);
  return (frame, length) => {
    const plain = frame.subarray(1, 1 + length);
    const bound = zstd.compressBound(length);
    if (scratch.length < bound) scratch = Buffer.alloc(bound);
    const compressed = cctx.compress2(scratch, plain);
    if (compressed < length) {
      frame[0] = CHUNK_ZSTD;
      frame.set(scratch.subarray(0, compressed), 1);
      return compressed + 1;
    }
    frame[0] = CHUNK_RAW;
    return length + 1;
  };
}

/** Encodes a block into a new frame (tests, small tools). */
export function encodeChunk(encoder: ChunkEncoder, data: Uint8Array): Buffer {
  const frame = Buffer.alloc(data.length + 1);
  frame.set(data, 1);
  return frame.subarray(0, encoder(frame, data.length));
}

/**
 * Decodes a stored frame in place: `frame` holds the stored bytes and has room for one byte plus
 * `plainLength`; afterwards the plain block sits at frame[1 .. 1 + plainLength]. Returns false when the
 * frame does not decode to exactly `plainLength` bytes.
 */
export type ChunkDecoder = (frame: Uint8Array, storedLength: number, plainLength: number) => boolean;

export function createChunkDecoder(): ChunkDecoder {
  const dctx = new zstd.DCtx();
  let scratch = Buffer.alloc(0);
  return (frame, storedLength, plainLength) => {
    if (frame[0] === CHUNK_RAW) return storedLength === plainLength + 1;
    if (frame[0] !== CHUNK_ZSTD) return false;
    if (scratch.length < plainLength + 1) scratch = Buffer.alloc(plainLength + 1);
    let size: number;
    try {
      size = dctx.decompress(scratch, frame.subarray(1, storedLength));
    } catch {
      return false;
    }
    if (size !== plainLength) return false;
    frame.set(scratch.subarray(0, size), 1);
    return true;
  };
}

const decompressor = new Decompressor();

export function decodeChunk(stored: Buffer): Buffer {
  if (stored.length === 0) throw new Error('empty chunk file');
  if (stored[0] === CHUNK_RAW) return stored.subarray(1);
  if (stored[0] === CHUNK_ZSTD) return decompressor.decompress(stored.subarray(1));
  throw new Error(`unknown chunk encoding ${stored[0]}`);
}
