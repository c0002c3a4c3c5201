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
 * Decodes a stored frame (`stored`, `storedLength` bytes) into `plain` (exactly the block's length).
 * Returns false when the frame does not decode to exactly that many bytes.
 */
export type ChunkDecoder = (stored: Uint8Array, storedLength: number, plain: Uint8Array) => boolean;

export function createChunkDecoder(): ChunkDecoder {
  const dctx = new zstd.DCtx();
  return (stored, storedLength, plain) => {
    if (stored[0] === CHUNK_RAW) {
      if (storedLength !== plain.length + 1) return false;
      plain.set(stored.subarray(1, storedLength));
      return true;
    }
    if (stored[0] !== CHUNK_ZSTD) return false;
    try {
      return dctx.decompress(plain, stored.subarray(1, storedLength)) === plain.length;
    } catch {
      return false; // corrupt frame, or larger than the block
    }
  };
}
