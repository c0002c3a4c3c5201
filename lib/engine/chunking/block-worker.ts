/**
 * Worker thread: hashes blocks and, on request, encodes (compresses) them in place, so both cores work
 * while the main thread reads and writes. Blocks live in slots of a SharedArrayBuffer owned by the pool
 * (byte 0 of a slot is the frame's encoding byte, the block follows): nothing is copied or allocated per block.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createChunkDecoder, createChunkEncoder } from '../repository/chunk-codec';
import { type ChunkIdScheme, chunkIdOf } from '../repository/chunk-id';

/** `ids`: the repository's way of naming blocks (an encrypted one's key is handed over in memory, never written). */
export type BlockWorkerData = { zstdLevel: number; slots: SharedArrayBuffer; slotSize: number; ids: ChunkIdScheme };

export type BlockRequest =
  | { op: 'hash'; seq: number; slot: number; length: number }
  | { op: 'encode'; seq: number; slot: number; length: number }
  | { op: 'decode'; seq: number; slot: number; blockOffset: number; frameOffset: number; storedLength: number; length: number; id: string };

export type BlockReply =
  | { op: 'hashed'; seq: number; id: string; zero: boolean }
  | { op: 'encoded'; seq: number; frameLength: number }
  | { op: 'decoded'; seq: number; ok: boolean };

const { zstdLevel, slots, slotSize, ids } = workerData as BlockWorkerData;
const encode = createChunkEncoder(zstdLevel);
const decode = createChunkDecoder();
let zeros = Buffer.alloc(0);

parentPort!.on('message', (request: BlockRequest) => {
  if (request.op === 'decode') {
    // Restore: the stored frame sits beside the block's place in the slot; decode it there, then check it.
    const block = new Uint8Array(slots, request.blockOffset, request.length);
    const ok = decode(new Uint8Array(slots, request.frameOffset, request.storedLength), request.storedLength, block)
      && chunkIdOf(ids, block) === request.id;
    parentPort!.postMessage({ op: 'decoded', seq: request.seq, ok } satisfies BlockReply);
    return;
  }
  const frame = new Uint8Array(slots, request.slot * slotSize, request.length + 1);
  if (request.op === 'hash') {
    const block = frame.subarray(1);
    if (zeros.length !== block.length) zeros = Buffer.alloc(block.length);
    const zero = Buffer.compare(block, zeros) === 0;
    const id = chunkIdOf(ids, block);
    parentPort!.postMessage({ op: 'hashed', seq: request.seq, id, zero } satisfies BlockReply);
  } else {
    parentPort!.postMessage({ op: 'encoded', seq: request.seq, frameLength: encode(frame, request.length) } satisfies BlockReply);
  }
});
