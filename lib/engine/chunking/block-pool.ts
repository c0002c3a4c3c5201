import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ChunkId, ChunkIdScheme } from '../repository/chunk-id';
import { type ObjectSealer, SEAL_OVERHEAD } from '../repository/encryption';
import type { BlockReply, BlockRequest, BlockWorkerData } from './block-worker';

/** A block held in one slot of the pool's shared memory until `release`: `bytes` is the block, `frame` the
 *  slot from its encoding byte on (see block-worker.ts); in a restore pool, where the stored frame is read. */
export type Slot = { index: number; bytes: Uint8Array; frame: Uint8Array };
export type HashedBlock = { id: ChunkId; zero: boolean };

/** Direct I/O wants buffers, offsets and lengths aligned to the device's block size; 4 KiB covers common devices. */
export const DIRECT_IO_ALIGNMENT = 4096;

const roundUp = (n: number, multiple: number) => Math.ceil(n / multiple) * multiple;

/**
 * Worker threads that hash and compress blocks, over a fixed set of shared-memory slots: the caller
 * `acquire`s a slot, reads a block into it, asks for `hash` and maybe `encode`, then `release`s it.
 * The slot count bounds memory and the work in flight. One pool serves a whole backup run.
 */
export class BlockPool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, { resolve: (reply: BlockReply) => void; reject: (err: Error) => void }>();
  private readonly free: number[];
  private readonly waitingForSlot: ((slot: number) => void)[] = [];
  private readonly shared: SharedArrayBuffer;
  private readonly slotSize: number;
  private readonly slotCount: number;
  private nextSeq = 0;
  private failure?: Error;

  /** Restore slots: the block at `restoreShift` within an aligned region (see alignForDirectIo), the stored frame after it. */
  private restoreShift = 0;
  private directIoAligned = false;

  /** Whether frames are sealed after encoding and opened before decoding (the pool was given a sealer). */
  readonly seals: boolean;
  /** Room a stored frame may take beyond the block and its encoding byte. */
  private readonly frameExtra: number;

  /**
   * `ids`: how the repository names blocks (Repository.ids): hashing and the check after decoding use it. `sealer`: an
   * encrypted repository's (Repository.chunkSealer): frames are then sealed and opened in the workers, beside their
   * compression, instead of on the main thread; the repository is told (putEncodedChunk and readEncodedChunkInto, sealed).
   */
  constructor(readonly options: { ids: ChunkIdScheme; zstdLevel?: number; blockSize: number; threads?: number; slots?: number; forRestore?: boolean; sealer?: ObjectSealer }) {
    const threads = options.threads ?? Math.max(1, Math.min(os.availableParallelism(), 8));
    const slotCount = (this.slotCount = options.slots ?? threads * 8);
    this.seals = options.sealer !== undefined;
    this.frameExtra = this.seals ? SEAL_OVERHEAD : 0;
    this.slotSize = options.forRestore
      ? DIRECT_IO_ALIGNMENT + roundUp(options.blockSize, DIRECT_IO_ALIGNMENT) + roundUp(options.blockSize + 1 + this.frameExtra, DIRECT_IO_ALIGNMENT)
      : options.blockSize + 1 + this.frameExtra;
    this.shared = new SharedArrayBuffer(slotCount * this.slotSize);
    this.free = Array.from({ length: slotCount }, (_, i) => i);
    // Bundled (dist/), the worker is a sibling file; from sources (tests), a bootstrap loads it through tsx.
    const url = import.meta.url.endsWith('.ts') ? new URL('./block-worker-entry.mjs', import.meta.url) : new URL('./block-worker.js', import.meta.url);
    const workerData: BlockWorkerData = { zstdLevel: options.zstdLevel ?? 1, slots: this.shared, slotSize: this.slotSize, ids: options.ids, ...(options.sealer ? { sealRoot: options.sealer.root } : {}) };
    this.workers = Array.from({ length: threads }, () => {
      const worker = new Worker(url, { workerData, resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 } });
      worker.on('message', (reply: BlockReply) => {
        const waiter = this.pending.get(reply.seq);
        this.pending.delete(reply.seq);
        waiter?.resolve(reply);
      });
      worker.on('error', (err) => this.fail(err));
      return worker;
    });
  }

  /**
   * Restore: lets every slot's block start at an address that direct I/O accepts. `accepts(view)` tries a
   * write of DIRECT_IO_ALIGNMENT bytes from `view`; the first shift it accepts is kept. Returns false when none.
   */
  async alignForDirectIo(accepts: (view: Uint8Array) => Promise<boolean>): Promise<boolean> {
    if (!this.options.forRestore) throw new Error('direct I/O needs a pool made forRestore');
    // Once chosen the shift stays: another device must accept it as it is.
    if (this.directIoAligned) return accepts(new Uint8Array(this.shared, this.restoreShift, DIRECT_IO_ALIGNMENT));
    // The buffer's base is only known to be 16-aligned; slot sizes are multiples of the alignment.
    for (let shift = 0; shift < DIRECT_IO_ALIGNMENT; shift += 16) {
      if (await accepts(new Uint8Array(this.shared, shift, DIRECT_IO_ALIGNMENT))) {
        if (this.free.length !== this.slotCount) throw new Error('alignForDirectIo needs every slot free');
        this.restoreShift = shift;
        this.directIoAligned = true;
        return true;
      }
    }
    return false;
  }

  async acquire(length: number): Promise<Slot> {
    const index = this.free.pop() ?? (await new Promise<number>((resolve) => this.waitingForSlot.push(resolve)));
    if (this.options.forRestore) {
      const block = index * this.slotSize + this.restoreShift;
      return { index, bytes: new Uint8Array(this.shared, block, length), frame: this.frameSpace(index) };
    }
    const frame = new Uint8Array(this.shared, index * this.slotSize, length + 1);
    return { index, bytes: frame.subarray(1), frame };
  }

  release(slot: Slot): void {
    const waiter = this.waitingForSlot.shift();
    if (waiter) {
      waiter(slot.index);
    } else {
      this.free.push(slot.index);
    }
  }

  async hash(slot: Slot): Promise<HashedBlock> {
    const reply = await this.send({ op: 'hash', seq: this.nextSeq++, slot: slot.index, length: slot.bytes.length });
    if (reply.op !== 'hashed') throw new Error('block worker protocol error');
    return { id: reply.id as ChunkId, zero: reply.zero };
  }

  /** Compresses the block in its slot; returns the stored frame (a view of the slot, valid until release). */
  /** `id`: the block's id, under whose key a sealing pool seals the frame. */
  async encode(slot: Slot, id?: ChunkId): Promise<Uint8Array> {
    if (this.seals && !id) throw new Error('a sealing pool encodes a block only with its id');
    const reply = await this.send({ op: 'encode', seq: this.nextSeq++, slot: slot.index, length: slot.bytes.length, id });
    if (reply.op !== 'encoded') throw new Error('block worker protocol error');
    return new Uint8Array(this.shared, slot.frame.byteOffset, reply.frameLength);
  }

  /** Restore: where a stored frame is read before `decode` (room for a raw frame). */
  frameSpace(slot: Slot | number): Uint8Array {
    if (!this.options.forRestore) throw new Error('frameSpace needs a pool made forRestore');
    const index = typeof slot === 'number' ? slot : slot.index;
    const offset = index * this.slotSize + DIRECT_IO_ALIGNMENT + roundUp(this.options.blockSize, DIRECT_IO_ALIGNMENT);
    return new Uint8Array(this.shared, offset, this.options.blockSize + 1 + this.frameExtra);
  }

  /** Restore: the slot's block padded to a multiple of DIRECT_IO_ALIGNMENT (bytes past the block are junk). */
  paddedBlock(slot: Slot): Uint8Array {
    return new Uint8Array(this.shared, slot.bytes.byteOffset, roundUp(slot.bytes.length, DIRECT_IO_ALIGNMENT));
  }

  /**
   * Restore: the slot holds a stored frame of `storedLength` bytes (see frameSpace); a worker decodes it
   * into `slot.bytes` and checks it against `id`. Returns false when corrupt.
   */
  async decode(slot: Slot, storedLength: number, id: string): Promise<boolean> {
    const reply = await this.send({
      op: 'decode', seq: this.nextSeq++, slot: slot.index, blockOffset: slot.bytes.byteOffset, frameOffset: slot.frame.byteOffset,
      storedLength, length: slot.bytes.length, id,
    });
    if (reply.op !== 'decoded') throw new Error('block worker protocol error');
    return reply.ok;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private send(request: BlockRequest): Promise<BlockReply> {
    if (this.failure) return Promise.reject(this.failure);
    // Spread by sequence number: hashing and encoding of consecutive blocks alternate between workers.
    const worker = this.workers[request.seq % this.workers.length];
    return new Promise((resolve, reject) => {
      this.pending.set(request.seq, { resolve, reject });
      worker.postMessage(request);
    });
  }

  private fail(err: Error): void {
    this.failure = err;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
  }
}
