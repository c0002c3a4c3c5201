/**
 * Worker thread: hashes blocks and, on request, encodes (compresses) them, so both cores work while
 * the main thread reads and writes. Blocks arrive as transferred ArrayBuffers and stay here until
 * the main thread says whether to encode or drop them.
 */
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { createChunkEncoder } from '../repository/chunk-codec';

export type BlockRequest =
  | { op: 'hash'; seq: number; buffer: ArrayBuffer; length: number }
  | { op: 'encode'; seq: number }
  | { op: 'drop'; seq: number };

export type BlockReply =
  | { op: 'hashed'; seq: number; id: string; zero: boolean }
  | { op: 'encoded'; seq: number; encoded: ArrayBuffer; byteOffset: number; length: number };

const encode = createChunkEncoder((workerData as { zstdLevel: number }).zstdLevel);
const held = new Map<number, Buffer>();
let zeros = Buffer.alloc(0);

parentPort!.on('message', (request: BlockRequest) => {
  if (request.op === 'hash') {
    const block = Buffer.from(request.buffer, 0, request.length);
    if (zeros.length !== block.length) zeros = Buffer.alloc(block.length);
    const zero = block.equals(zeros);
    const id = createHash('sha256').update(block).digest('hex');
    if (!zero) held.set(request.seq, block);
    parentPort!.postMessage({ op: 'hashed', seq: request.seq, id, zero } satisfies BlockReply);
  } else if (request.op === 'encode') {
    const block = held.get(request.seq)!;
    held.delete(request.seq);
    const encoded = encode(block);
    // Copy into an ArrayBuffer of its own so it can be transferred back.
    const out = new Uint8Array(new ArrayBuffer(encoded.length));
    out.set(encoded);
    parentPort!.postMessage({ op: 'encoded', seq: request.seq, encoded: out.buffer, byteOffset: 0, length: out.length } satisfies BlockReply, [out.buffer]);
  } else {
    held.delete(request.seq);
  }
});
