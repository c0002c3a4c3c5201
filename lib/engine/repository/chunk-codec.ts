import { Compressor, Decompressor } from 'zstd-napi';

/** First byte of a stored chunk: how the rest is encoded. */
const RAW = 0;
const ZSTD = 1;

export type ChunkEncoder = (data: Uint8Array) => Buffer;

/** zstd at `level`; the block is kept raw when compression does not shrink it. */
export function createChunkEncoder(level: number): ChunkEncoder {
  const compressor = new Compressor();
  compressor.setParameters({ compressionLevel: level });
  return (data) => {
    const compressed = compressor.compress(data);
    if (compressed.length + 1 < data.length) return Buffer.concat([Buffer.of(ZSTD), compressed]);
    return Buffer.concat([Buffer.of(RAW), data]);
  };
}

const decompressor = new Decompressor();

export function decodeChunk(stored: Buffer): Buffer {
  if (stored.length === 0) throw new Error('empty chunk file');
  if (stored[0] === RAW) return stored.subarray(1);
  if (stored[0] === ZSTD) return decompressor.decompress(stored.subarray(1));
  throw new Error(`unknown chunk encoding ${stored[0]}`);
}
