import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ChunkId } from '../repository/chunk-id';
import type { BlockReply, BlockRequest, BlockWorkerData } from './block-worker';

/** A block held in one slot of the pool's shared memory until `release`: `bytes` is the block, `frame` the
 *  slot from its encoding byte on (see block-worker.ts). */
export type Slot = { index: number; bytes: Uint8Array; frame: Uint8Array };
export type HashedBlock = { id: ChunkId; zero: boolean };

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
  private nextSeq = 0;
  private failure?: Error;

  /** `forRestore` doubles each slot: its upper half receives the stored frame that is decoded into the lower. */
  constructor(readonly options: { zstdLevel?: number; blockSize: number; threads?: number; slots?: number; forRestore?: boolean }) {
    const threads = options.threads ?? Math.max(1, Math.min(os.availableParallelism(), 8));
    const slotCount = options.slots ?? threads * 8;
    this.slotSize = (options.blockSize + 1) * (options.forRestore ? 2 : 1);
    this.shared = new SharedArrayBuffer(slotCount * this.slotSize);
    this.free = Array.from({ length: slotCount }, (_, i) => i);
    // Bundled (dist/), the worker is a sibling file; from sources (tests), a bootstrap loads it through tsx.
    const url = import.meta.url.endsWith('.ts') ? new URL('./block-worker-entry.mjs', import.meta.url) : new URL('./block-worker.js', import.meta.url);
    const workerData: BlockWorkerData = { zstdLevel: options.zstdLevel ?? 1, slots: this.shared, slotSize: this.slotSize };
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

  async acquire(length: number): Promise<Slot> {
    const index = this.free.pop() ?? (await new Promise<number>((resolve) => this.waitingForSlot.push(resolve)));
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
  async encode(slot: Slot): Promise<Uint8Array> {
    const reply = await this.send({ op: 'encode', seq: this.nextSeq++, slot: slot.index, length: slot.bytes.length });
    if (reply.op !== 'encoded') throw new Error('block worker protocol error');
    return slot.frame.subarray(0, reply.frameLength);
  }

  /** Restore: where a stored frame is read before `decode` (the slot's upper half; room for a raw frame). */
  frameSpace(slot: Slot): Uint8Array {
    if (!this.options.forRestore) throw new Error('frameSpace needs a pool made forRestore');
    const half = this.slotSize / 2;
    return new Uint8Array(this.shared, slot.index * this.slotSize + half, half);
  }

  /**
   * Restore: the slot holds a stored frame of `storedLength` bytes (see frameSpace); a worker decodes it
   * into `slot.bytes` and checks it against `id`. Returns false when corrupt.
   */
  async decode(slot: Slot, storedLength: number, id: string): Promise<boolean> {
    const reply = await this.send({ op: 'decode', seq: this.nextSeq++, slot: slot.index, storedLength, length: slot.bytes.length, id });
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
