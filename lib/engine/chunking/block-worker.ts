/**
 * Worker thread: hashes blocks and, on request, encodes (compresses) them in place, so both cores work
 * while the main thread reads and writes. Blocks live in slots of a SharedArrayBuffer owned by the pool
 * (byte 0 of a slot is the frame's encoding byte, the block follows): nothing is copied or allocated per block.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createChunkDecoder, createChunkEncoder } from '../repository/chunk-codec';
import { type ChunkId, type ChunkIdScheme, chunkIdOf, chunkKey } from '../repository/chunk-id';
import { ObjectSealer, SEAL_BODY_AT } from '../repository/encryption';

/**
 * `ids`: the repository's way of naming blocks; `sealRoot`: an encrypted repository's object-key root, when the pool
 * seals frames after encoding them and opens them before decoding (both handed over in memory, never written).
 */
export type BlockWorkerData = { zstdLevel: number; slots: SharedArrayBuffer; slotSize: number; ids: ChunkIdScheme; sealRoot?: Uint8Array };

export type BlockRequest =
  | { op: 'hash'; seq: number; slot: number; length: number }
  | { op: 'encode'; seq: number; slot: number; length: number; id?: string }
  | { op: 'decode'; seq: number; slot: number; blockOffset: number; frameOffset: number; storedLength: number; length: number; id: string };

export type BlockReply =
  | { op: 'hashed'; seq: number; id: string; zero: boolean }
  | { op: 'encoded'; seq: number; frameLength: number }
  | { op: 'decoded'; seq: number; ok: boolean };

const { zstdLevel, slots, slotSize, ids, sealRoot } = workerData as BlockWorkerData;
const encode = createChunkEncoder(zstdLevel);
const decode = createChunkDecoder();
const sealer = sealRoot ? new ObjectSealer(Buffer.from(sealRoot)) : undefined;
let zeros = Buffer.alloc(0);

/** A sealed frame opened where it lies (its tag checked under its chunk's key); undefined when it does not verify. */
function opened(sealed: Uint8Array, id: string): Uint8Array | undefined {
  const length = sealer!.openInPlace(chunkKey(id as ChunkId), sealed);
  return length === undefined ? undefined : sealed.subarray(SEAL_BODY_AT, SEAL_BODY_AT + length);
}

parentPort!.on('message', (request: BlockRequest) => {
  if (request.op === 'decode') {
    // Restore: the stored frame sits beside the block's place in the slot; opened (if sealed) and decoded there, then checked.
    const block = new Uint8Array(slots, request.blockOffset, request.length);
    const stored = new Uint8Array(slots, request.frameOffset, request.storedLength);
    const frame = sealer ? opened(stored, request.id) : stored;
    const ok = frame !== undefined && decode(frame, frame.length, block) && chunkIdOf(ids, block) === request.id;
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
    let frameLength = encode(frame, request.length);
    if (sealer) {
      // Sealed where it was compressed, under its chunk's key, in the slot itself (room: SEAL_OVERHEAD more): the frame
      // moves past the header and nonce, and is enciphered where it lies.
      const room = new Uint8Array(slots, request.slot * slotSize, slotSize);
      room.copyWithin(SEAL_BODY_AT, 0, frameLength);
      frameLength = sealer.sealInPlace(chunkKey(request.id as ChunkId), room, frameLength);
    }
    parentPort!.postMessage({ op: 'encoded', seq: request.seq, frameLength } satisfies BlockReply);
  }
});
