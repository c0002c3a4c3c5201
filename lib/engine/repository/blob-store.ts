/**
 * The lowest layer: bytes by key. Keys are slash-separated paths of [a-z0-9._-] segments.
 * Every implementation passes the shared conformance suite in blob-store.conformance.ts.
 */
export type BlobStore = {
  /** Stores atomically: a reader sees the whole blob or none. Putting a key that exists succeeds. */
  put(key: string, data: Uint8Array): Promise<void>;
  /** Throws BlobNotFoundError when the key is absent. */
  get(key: string): Promise<Buffer>;
  has(key: string): Promise<boolean>;
  /** Optional: reads a blob into `target` (which must be large enough) without allocating; returns its length. */
  readInto?(key: string, target: Uint8Array): Promise<number>;
  /** Keys under a prefix ("chunks/"), in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  delete(key: string): Promise<void>;
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
