import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ChunkId } from '../repository/chunk-id';
import type { BlockReply, BlockRequest } from './block-worker';

export type HashedBlock = { id: ChunkId; zero: boolean; worker: number; seq: number };

/**
 * A small pool of block workers. `hash` hands a block to a worker (round robin); the block stays there
 * until `encode` (returns the stored bytes) or `drop`. One pool serves a whole backup run.
 */
export class BlockPool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, (reply: BlockReply) => void>();
  private nextSeq = 0;
  private nextWorker = 0;
  private failure?: Error;

  constructor(options: { zstdLevel: number; threads?: number }) {
    const threads = options.threads ?? Math.max(1, Math.min(os.availableParallelism(), 8));
    const url = new URL('./block-worker-entry.mjs', import.meta.url);
    this.workers = Array.from({ length: threads }, () => {
      const worker = new Worker(url, { workerData: { zstdLevel: options.zstdLevel } });
      worker.on('message', (reply: BlockReply) => {
        const resolve = this.waiting.get(reply.seq);
        this.waiting.delete(reply.seq);
        resolve?.(reply);
      });
      worker.on('error', (err) => this.fail(err));
      worker.unref();
      return worker;
    });
  }

  get size(): number {
    return this.workers.length;
  }

  async hash(buffer: ArrayBuffer, length: number): Promise<HashedBlock> {
    const seq = this.nextSeq++;
    const worker = this.nextWorker;
    this.nextWorker = (this.nextWorker + 1) % this.workers.length;
    const reply = await this.send(worker, { op: 'hash', seq, buffer, length }, [buffer]);
    if (reply.op !== 'hashed') throw new Error('block worker protocol error');
    return { id: reply.id as ChunkId, zero: reply.zero, worker, seq };
  }

  async encode(block: HashedBlock): Promise<Buffer> {
    const reply = await this.send(block.worker, { op: 'encode', seq: block.seq });
    if (reply.op !== 'encoded') throw new Error('block worker protocol error');
    return Buffer.from(reply.encoded, reply.byteOffset, reply.length);
  }

  drop(block: HashedBlock): void {
    if (!block.zero) this.workers[block.worker].postMessage({ op: 'drop', seq: block.seq } satisfies BlockRequest);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private send(worker: number, request: BlockRequest, transfer: ArrayBuffer[] = []): Promise<BlockReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.set(request.seq, resolve);
      this.rejecters.set(request.seq, reject);
      this.workers[worker].postMessage(request, transfer);
    }).finally(() => this.rejecters.delete(request.seq)) as Promise<BlockReply>;
  }

  private readonly rejecters = new Map<number, (err: Error) => void>();

  private fail(err: Error): void {
    this.failure = err;
    for (const reject of this.rejecters.values()) reject(err);
    this.rejecters.clear();
    this.waiting.clear();
  }
}
