import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type BlobStore, BlobNotFoundError, assertValidKey } from './blob-store';

/** A blob store in a local folder: one file per key, written to a temp file, fsynced, then renamed. */
export class FsBlobStore implements BlobStore {
  private readonly madeDirs = new Set<string>();

  constructor(readonly root: string) {}

  get location(): string {
    return this.root;
  }

  private fileOf(key: string): string {
    assertValidKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const file = this.fileOf(key);
    const dir = path.dirname(file);
    if (!this.madeDirs.has(dir)) {
      await fs.mkdir(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const handle = await fs.open(temp, 'wx');
    try {
      // One write call per blob where the kernel takes it whole (writeFile splits into 512 KiB writes).
      for (let written = 0; written < data.length; ) {
        written += (await handle.write(data, written, data.length - written, written)).bytesWritten;
      }
      await handle.datasync();
    } catch (err) {
      await handle.close();
      await fs.rm(temp, { force: true });
      throw err;
    }
    await handle.close();
    await fs.rename(temp, file);
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.fileOf(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(key, this.root);
      throw err;
    }
  }

  async readInto(key: string, target: Uint8Array): Promise<number> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(this.fileOf(key), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(key, this.root);
      throw err;
    }
    try {
      let length = 0;
      for (;;) {
        if (length === target.length) {
          // Full: the blob may be larger than the target; one more byte tells.
          const probe = await handle.read(Buffer.alloc(1), 0, 1, length);
          if (probe.bytesRead > 0) throw new Error(`blob ${key} is larger than ${target.length} bytes`);
          return length;
        }
        const { bytesRead } = await handle.read(target, length, target.length - length, length);
        length += bytesRead;
        // A regular file returns all it has up to the size asked: a short read is the end.
        if (bytesRead === 0 || length < target.length) return length;
      }
    } finally {
      await handle.close();
    }
  }

  async has(key: string): Promise<boolean> {
    try {
      await fs.access(this.fileOf(key));
      return true;
    } catch {
      return false;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const base = path.join(this.root, ...prefix.split('/').filter(Boolean));
    let entries;
    try {
      entries = await fs.readdir(base, { recursive: true, withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const entry of entries) {
      if (!entry.isFile() || entry.name.includes('.tmp-')) continue;
      yield path.relative(this.root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/');
    }
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.fileOf(key), { force: true });
  }
}
