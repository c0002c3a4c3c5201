import os from 'node:os';
import type { BlobStore } from './blob-store';

/** Errors a storage raises that the layers above must survive. */
export type FaultCode = 'ENOSPC' | 'EDQUOT' | 'EIO' | 'EROFS' | 'EACCES' | 'ETIMEDOUT';
export type BlobOperation = 'put' | 'get' | 'has' | 'size' | 'delete' | 'readInto' | 'list' | 'flush';

export type Fault = {
  op: BlobOperation;
  /** Which call of `op` (1-based), counting only calls whose key starts with `keyPrefix`. Default 1. */
  call?: number;
  keyPrefix?: string;
  /**
   * An errno code: the call fails with an error shaped like Node's fs errors (`code`, `errno`, `syscall`,
   * `path`). `short-write` (put only): the inner store receives the first half of the bytes and the call
   * resolves — a torn write the store did not report (a non-atomic store, a lying disk): only a read that
   * verifies can catch it.
   */
  error: FaultCode | 'short-write';
  /** The fault hits that call and every later matching one (a full disk stays full). */
  persistent?: boolean;
  /** The inner call runs first, then the caller gets the error (a lost acknowledgement: a put may have stored its blob). */
  after?: boolean;
};

export type InjectedFault = { op: BlobOperation; key: string; error: Fault['error'] };

const DESCRIPTIONS: Record<FaultCode, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'i/o error',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  ETIMEDOUT: 'connection timed out',
};

const SYSCALLS: Record<BlobOperation, string> = {
  put: 'write', get: 'open', has: 'access', size: 'stat', delete: 'unlink', readInto: 'read', list: 'scandir', flush: 'fsync',
};

/** An error as node:fs raises it: `ENOSPC: no space left on device, write '/repo/chunks/ab/…'`. */
export function fsError(code: FaultCode, syscall: string, file: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${DESCRIPTIONS[code]}, ${syscall} '${file}'`), {
    code, syscall, path: file, errno: -(os.constants.errno as Record<string, number>)[code],
  });
}

/**
 * A wrapper over any BlobStore that injects storage faults at chosen calls, for tests of every layer above
 * (kopia's blobtesting.FaultyStorage): `new FaultyBlobStore(inner, { faults: [{ op: 'put', call: 7, error: 'ENOSPC' }] })`.
 * Without faults it behaves exactly as its inner store and passes the conformance suite.
 */
export class FaultyBlobStore implements BlobStore {
  readonly faults: Fault[];
  /** Every fault injected so far, in order. */
  readonly injected: InjectedFault[] = [];
  readonly readInto?: (key: string, target: Uint8Array) => Promise<number>;
  readonly sweepTemporaryFiles?: () => Promise<{ removed: number; kept: number }>;
  readonly freeBytes?: () => Promise<number | undefined>;
  private readonly counts = new Map<Fault, number>();

  constructor(readonly inner: BlobStore, options: { faults?: Fault[] } = {}) {
    this.faults = [...(options.faults ?? [])];
    const readInto = inner.readInto?.bind(inner);
    if (readInto) this.readInto = (key, target) => this.run('readInto', key, () => readInto(key, target));
    if (inner.sweepTemporaryFiles) this.sweepTemporaryFiles = () => inner.sweepTemporaryFiles!();
    if (inner.freeBytes) this.freeBytes = () => inner.freeBytes!();
  }

  get location(): string {
    return this.inner.location;
  }

  /** Adds a fault while the store is in use (say, "the disk fills up now"). */
  inject(fault: Fault): void {
    this.faults.push(fault);
  }

  put(key: string, data: Uint8Array): Promise<void> {
    const fault = this.due('put', key);
    if (fault?.error === 'short-write') {
      this.injected.push({ op: 'put', key, error: fault.error });
      return this.inner.put(key, data.subarray(0, Math.floor(data.length / 2)));
    }
    return this.apply(fault, 'put', key, () => this.inner.put(key, data));
  }

  get(key: string): Promise<Buffer> {
    return this.run('get', key, () => this.inner.get(key));
  }

  has(key: string): Promise<boolean> {
    return this.run('has', key, () => this.inner.has(key));
  }

  size(key: string): Promise<number> {
    return this.run('size', key, () => this.inner.size(key));
  }

  delete(key: string): Promise<void> {
    return this.run('delete', key, () => this.inner.delete(key));
  }

  flush(): Promise<void> {
    return this.run('flush', '', () => this.inner.flush?.() ?? Promise.resolve());
  }

  async *list(prefix: string): AsyncIterable<string[]> {
    const fault = this.due('list', prefix);
    if (fault && !fault.after) throw this.raise(fault, 'list', prefix);
    yield* this.inner.list(prefix);
    if (fault) throw this.raise(fault, 'list', prefix);
  }

  private run<T>(op: BlobOperation, key: string, call: () => Promise<T>): Promise<T> {
    return this.apply(this.due(op, key), op, key, call);
  }

  private async apply<T>(fault: Fault | undefined, op: BlobOperation, key: string, call: () => Promise<T>): Promise<T> {
    if (!fault) return call();
    if (fault.after) await call();
    throw this.raise(fault, op, key);
  }

  /** Counts this call against every fault of its operation and returns the first one it hits. */
  private due(op: BlobOperation, key: string): Fault | undefined {
    let hit: Fault | undefined;
    for (const fault of this.faults) {
      if (fault.op !== op || !key.startsWith(fault.keyPrefix ?? '')) continue;
      const count = (this.counts.get(fault) ?? 0) + 1;
      this.counts.set(fault, count);
      const at = fault.call ?? 1;
      if (!hit && (count === at || (fault.persistent && count > at))) hit = fault;
    }
    return hit;
  }

  private raise(fault: Fault, op: BlobOperation, key: string): Error {
    this.injected.push({ op, key, error: fault.error });
    const code = fault.error === 'short-write' ? 'EIO' : fault.error;
    return fsError(code, SYSCALLS[op], key ? `${this.inner.location}/${key}` : this.inner.location);
  }
}

/**
 * A store that runs `beforePut` before each put of `inner` (to delay it, fail it, or change a disk meanwhile) and
 * is otherwise `inner`, durability barrier and free space included.
 */
export function hookedStore(inner: BlobStore, beforePut: (key: string) => Promise<void>): BlobStore {
  return {
    location: inner.location,
    put: async (key, data) => { await beforePut(key); return inner.put(key, data); },
    get: (key) => inner.get(key),
    has: (key) => inner.has(key),
    size: (key) => inner.size(key),
    delete: (key) => inner.delete(key),
    list: (prefix) => inner.list(prefix),
    ...(inner.flush && { flush: () => inner.flush!() }),
    ...(inner.freeBytes && { freeBytes: () => inner.freeBytes!() }),
  };
}
