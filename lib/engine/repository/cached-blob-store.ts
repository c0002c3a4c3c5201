import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BlobStore } from './blob-store';

/**
 * A local copy of a remote store's image packs: a pack is never rewritten and its key never reused (a new pack id has
 * random digits), so a copy can never be stale. Listings of backups, restore plans, reconciles and catalog rebuilds read
 * packs again and again; from a bucket each read is a GET and a round trip. Everything else, and every question of
 * existence, goes to the store: a pack removed there (prune on another host) is absent here too, whatever the copy
 * holds. (Stored-disk manifests are not kept: one moved aside as damaged is written again under its key.)
 *
 * The copy is kept per repository id (a new repository at the same location names other bytes with the same keys), as
 * fetched (an encrypted repository's blobs stay sealed here), each file prefixed with the SHA-256 of the bytes: a copy
 * damaged on the local disk is dropped and fetched again. Written to a temp file and renamed; any failure of the local
 * disk only costs the fetch. Safe to delete at any time.
 */
export class CachedBlobStore implements BlobStore {
  readonly location: string;
  readonly flush?: () => Promise<void>;
  readonly freeBytes?: () => Promise<number | undefined>;
  readonly sweepTemporaryFiles?: () => Promise<{ removed: number; kept: number }>;
  private namespace?: Promise<string | undefined>;

  constructor(readonly inner: BlobStore, private readonly dir: string) {
    this.location = inner.location;
    if (inner.flush) this.flush = () => inner.flush!();
    if (inner.freeBytes) this.freeBytes = () => inner.freeBytes!();
    if (inner.sweepTemporaryFiles) this.sweepTemporaryFiles = () => inner.sweepTemporaryFiles!();
  }

  async get(key: string): Promise<Buffer> {
    const file = await this.fileOf(key);
    if (!file) return this.inner.get(key);
    const kept = await fs.readFile(file).catch(() => undefined);
    if (kept && kept.length >= 32) {
      const bytes = kept.subarray(32);
      if (createHash('sha256').update(bytes).digest().equals(kept.subarray(0, 32))) return bytes;
      await fs.rm(file, { force: true }).catch(() => undefined);
    }
    const bytes = await this.inner.get(key);
    await this.keep(file, bytes).catch(() => undefined);
    return bytes;
  }

  async readInto(key: string, target: Uint8Array): Promise<number> {
    if (this.inner.readInto && !isImmutable(key)) return this.inner.readInto(key, target);
    const bytes = await this.get(key);
    if (bytes.length > target.length) throw new Error(`blob ${key} is larger than ${target.length} bytes`);
    target.set(bytes);
    return bytes.length;
  }

  put(key: string, data: Uint8Array): Promise<void> {
    return this.inner.put(key, data);
  }

  has(key: string): Promise<boolean> {
    return this.inner.has(key);
  }

  size(key: string): Promise<number> {
    return this.inner.size(key);
  }

  async delete(key: string): Promise<void> {
    await this.inner.delete(key);
    const file = await this.fileOf(key).catch(() => undefined);
    if (file) await fs.rm(file, { force: true }).catch(() => undefined);
  }

  list(prefix: string): AsyncIterable<string[]> {
    return this.inner.list(prefix);
  }

  /** The local file of a blob worth keeping (undefined: not one, or the repository's id cannot be told yet). */
  private async fileOf(key: string): Promise<string | undefined> {
    if (!isImmutable(key)) return undefined;
    this.namespace ??= this.inner.get('config.json').then((bytes) => {
      const id = (JSON.parse(bytes.toString('utf8')) as { id?: unknown }).id;
      return typeof id === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(id) ? id : undefined;
    }).catch(() => undefined);
    const namespace = await this.namespace;
    if (!namespace) {
      this.namespace = undefined; // no repository yet: ask again next time
      return undefined;
    }
    return path.join(this.dir, namespace, ...key.split('/'));
  }

  private async keep(file: string, bytes: Buffer): Promise<void> {
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await fs.writeFile(temp, Buffer.concat([createHash('sha256').update(bytes).digest(), bytes]), { mode: 0o600 });
      await fs.rename(temp, file);
    } catch (err) {
      await fs.rm(temp, { force: true }).catch(() => undefined);
      throw err;
    }
  }
}

/** Keys whose bytes never change: images/<pack id>.<count>.pack. */
function isImmutable(key: string): boolean {
  return /^images\/[0-9A-Za-z-]+\.[1-9][0-9]*\.pack$/.test(key);
}
