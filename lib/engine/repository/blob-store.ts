/**
 * The lowest layer: bytes by key. Keys are slash-separated paths of [a-z0-9._-] segments.
 * Every implementation passes the shared conformance suite in blob-store.conformance.ts.
 * A failure of the storage itself is an Error with Node's errno `code` (ENOSPC, EIO, EROFS…), as fs raises.
 */
export type BlobStore = {
  /** Stores atomically: a reader sees the whole blob or none, also after a failed put. Putting a key that exists succeeds. */
  put(key: string, data: Uint8Array): Promise<void>;
  /**
   * The durability barrier: when it resolves, every put that resolved before the call survives a crash or a
   * power loss. Absent where a resolved put is already durable (an object store).
   */
  flush?(): Promise<void>;
  /** Bytes the store can still take, where it can tell (a file system's free space for its user); undefined: no limit known. */
  freeBytes?(): Promise<number | undefined>;
  /** Removes temp files that no running writer will finish (left by a killed process), where the store makes any. */
  sweepTemporaryFiles?(): Promise<{ removed: number; kept: number }>;
  /** Throws BlobNotFoundError when the key is absent. */
  get(key: string): Promise<Buffer>;
  /** False only when the key is absent: a storage failure rejects. */
  has(key: string): Promise<boolean>;
  /** The blob's stored length in bytes; throws BlobNotFoundError when the key is absent. */
  size(key: string): Promise<number>;
  /**
   * Removes a blob; an absent key is success (a retried delete). After it resolves no get or has sees it; like a put,
   * it survives a power loss once a flush() that began after it resolves. Only garbage collection and prune delete.
   */
  delete(key: string): Promise<void>;
  /** Optional: reads a blob into `target` (which must be large enough) without allocating; returns its length. */
  readInto?(key: string, target: Uint8Array): Promise<number>;
  /** Keys under a prefix ("chunks/"), in no particular order, in pages (as object stores list them): a listing of
   *  hundreds of thousands of images costs a step per page, not per key. */
  list(prefix: string): AsyncIterable<string[]>;
  /** A human-readable location for messages. */
  readonly location: string;
};

export class BlobNotFoundError extends Error {
  constructor(readonly key: string, location: string) {
    super(`${location}: blob ${key} not found`);
    this.name = 'BlobNotFoundError';
  }
}

const KEY = /^[a-z0-9._-]+(\/[a-z0-9._-]+)*$/i;

export function assertValidKey(key: string): void {
  if (!KEY.test(key) || key.split('/').some((part) => part === '.' || part === '..')) {
    throw new Error(`invalid blob key '${key}'`);
  }
}
