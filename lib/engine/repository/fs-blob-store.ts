import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type BlobStore, BlobNotFoundError, assertValidKey } from './blob-store';
import { processAlive } from '../process-alive';

/**
 * The file operations FsBlobStore writes with. Tests replace them to make a write, a sync or a rename fail
 * (the way kopia's filesystem storage takes an osInterface); everything else uses node:fs directly.
 */
export type FsWriteOps = {
  open(file: string, flags: string): Promise<fs.FileHandle>;
  rename(from: string, to: string): Promise<void>;
  /** Makes one folder (not recursive): EEXIST when it exists, ENOENT when its parent is missing. */
  mkdir(dir: string): Promise<void>;
  unlink(file: string): Promise<void>;
};

/** The store holds every disk of the fleet: its files and folders are the owner's only, whatever the umask. */
const NODE_OPS: FsWriteOps = {
  open: (file, flags) => fs.open(file, flags, 0o600),
  rename: (from, to) => fs.rename(from, to),
  mkdir: async (dir) => { await fs.mkdir(dir, { mode: 0o700 }); },
  unlink: (file) => fs.unlink(file),
};

/**
 * Temp files live in a `.tmp` folder of the root (top-level keys) and of each top-level folder (`chunks/.tmp`),
 * not beside their targets: a sweep reads a few small folders, not the whole store, and a top-level folder
 * may be another file system (a disk mounted at `chunks/`) since each rename stays inside it.
 */
const TEMP_DIR = '.tmp';
/** A temp file of another host (or of an older vmdedup, whose names carry no host) is stale after this. */
const FOREIGN_TEMP_MAX_AGE_MS = 24 * 3600 * 1000;
/** Older vmdedup wrote `<file>.tmp-<pid>-<random>` beside the file; such a file of a dead pid is stale after this. */
const LEGACY_TEMP_MIN_AGE_MS = 10 * 60 * 1000;
const TEMP_NAME = /\.tmp-(?:([A-Za-z0-9._-]+)-)?(\d+)-([0-9a-f]{8})$/;
/** Keys per page of a listing. */
const LIST_PAGE = 1000;

/** Directory fsyncs in flight at once in flush(). */
const SYNC_PARALLELISM = 16;

/** This host's name as it appears in temp names ([A-Za-z0-9._-] only). */
const HOST = os.hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'host';

export type SweepResult = { removed: number; kept: number };

/**
 * A blob store in a local folder: one file per key, written to a temp file in a `.tmp` folder, fsynced, then renamed
 * into place. Folders that gained entries are fsynced by flush() (the durability barrier), not per blob.
 */
export class FsBlobStore implements BlobStore {
  /** Folders known to exist (made or found by this store). */
  private readonly madeDirs = new Set<string>();
  /** Folders with entries (renamed files, made folders) not yet fsynced: flush() syncs them. */
  private readonly unsyncedDirs = new Set<string>();
  /** The flushes running now (see flush). */
  private flushing: Promise<void> = Promise.resolve();
  private readonly io: FsWriteOps;

  constructor(readonly root: string, options: { io?: Partial<FsWriteOps> } = {}) {
    this.io = { ...NODE_OPS, ...options.io };
  }

  get location(): string {
    return this.root;
  }

  private fileOf(key: string): string {
    assertValidKey(key);
    // `.tmp` folders and temp-like names are the store's own: such a key could be swept or hidden from list().
    if (key.split('/').includes(TEMP_DIR) || TEMP_NAME.test(key)) throw new Error(`invalid blob key '${key}' (reserved for temp files)`);
    return path.join(this.root, ...key.split('/'));
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const file = this.fileOf(key);
    const dir = path.dirname(file);
    const segments = key.split('/');
    const tempDir = path.join(this.root, ...(segments.length > 1 ? [segments[0]] : []), TEMP_DIR);
    await this.ensureDir(tempDir);
    await this.ensureDir(dir);
    const temp = path.join(tempDir, `${path.basename(file)}.tmp-${HOST}-${process.pid}-${randomBytes(4).toString('hex')}`);
    let handle: fs.FileHandle;
    try {
      handle = await this.io.open(temp, 'wx');
    } catch (err) {
      // A folder was removed behind our back (the madeDirs cache is stale): make the folders again, once.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.madeDirs.clear();
      await this.ensureDir(tempDir);
      await this.ensureDir(dir);
      handle = await this.io.open(temp, 'wx');
    }
    let renamed = false;
    try {
      try {
        // One write call per blob where the kernel takes it whole (writeFile splits into 512 KiB writes).
        for (let written = 0; written < data.length; ) {
          written += (await handle.write(data, written, data.length - written, written)).bytesWritten;
        }
        await handle.datasync();
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw err;
      }
      await handle.close();
      try {
        await this.io.rename(temp, file);
      } catch (err) {
        // The target's folder was removed behind our back meanwhile: make it again, once.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.madeDirs.clear();
        await this.ensureDir(dir);
        await this.io.rename(temp, file);
      }
      renamed = true;
    } finally {
      // Every failure path leaves no temp file; one that cannot be removed now is swept later.
      if (!renamed) await fs.rm(temp, { force: true }).catch(() => undefined);
    }
    this.unsyncedDirs.add(dir);
  }

  async freeBytes(): Promise<number | undefined> {
    const stats = await fs.statfs(this.root).catch(() => undefined);
    return stats ? stats.bavail * stats.bsize : undefined;
  }

  /**
   * Makes `dir` and any missing parents one level at a time, so a failure reports its own cause (Node's
   * recursive mkdir reports ENOENT for an ENOSPC or EROFS), and so each new folder's parent is fsynced by flush().
   */
  private async ensureDir(dir: string, parentMade = false): Promise<void> {
    if (this.madeDirs.has(dir)) return;
    try {
      await this.io.mkdir(dir);
      this.unsyncedDirs.add(path.dirname(dir));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && !parentMade && path.dirname(dir) !== dir) {
        await this.ensureDir(path.dirname(dir));
        return this.ensureDir(dir, true);
      }
      if (code !== 'EEXIST') throw err;
    }
    this.madeDirs.add(dir);
  }

  /**
   * The durability barrier: when it resolves, every put that resolved before it was called survives a power
   * loss (each blob is fsynced before its rename; this fsyncs the folders the renames and new folders changed).
   */
  async flush(): Promise<void> {
    const dirs = [...this.unsyncedDirs];
    this.unsyncedDirs.clear();
    // A flush still running took folders that puts made before this call renamed into: this one is done only when
    // that one is, and fails if it fails (concurrent writers flush at once: a VM's stored disk, a batch of images).
    const earlier = this.flushing;
    const mine = (async () => {
      try {
        for (let i = 0; i < dirs.length; i += SYNC_PARALLELISM) {
          // Settled, not raced: when this flush fails, none of its fsyncs is still running (nor racing the next flush).
          const synced = await Promise.allSettled(dirs.slice(i, i + SYNC_PARALLELISM).map((dir) => this.syncDir(dir)));
          const failed = synced.find((result): result is PromiseRejectedResult => result.status === 'rejected');
          if (failed) throw failed.reason;
        }
      } catch (err) {
        for (const dir of dirs) this.unsyncedDirs.add(dir); // not known durable: the next flush tries again
        throw err;
      }
    })();
    const settled = Promise.all([earlier, mine]).then(() => undefined);
    this.flushing = settled;
    // Once settled, later flushes need not wait for it (a failure put its folders back for them to sync).
    settled.then(() => undefined, () => undefined).then(() => { if (this.flushing === settled) this.flushing = Promise.resolve(); });
    await settled;
  }

  private async syncDir(dir: string): Promise<void> {
    const handle = await this.io.open(dir, 'r');
    try {
      await handle.sync();
    } catch (err) {
      // A file system that cannot fsync a folder (some network ones) gives no more than its renames.
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    } finally {
      await handle.close();
    }
  }

  /**
   * Removes temp files that no running put will rename (left by a kill -9 or a power loss). Rule, safe for a
   * repository shared by several hosts: a temp file of this host is stale when its process is not alive; one of
   * another host when it is older than 24 h. Removing one wrongly could only make that put fail (its rename
   * finds no file), never store a wrong blob. Also sweeps, once, what older vmdedup left beside its files.
   */
  async sweepTemporaryFiles(now = Date.now()): Promise<SweepResult> {
    const result: SweepResult = { removed: 0, kept: 0 };
    const rootTemp = path.join(this.root, TEMP_DIR);
    if (!(await isDirectory(rootTemp))) {
      // No .tmp/ folder: the store was last written by a vmdedup that left temps beside their targets.
      await this.sweepLegacy(this.root, now, result);
      await this.ensureDir(rootTemp);
      return result;
    }
    const tops = (await fs.readdir(this.root, { withFileTypes: true })).filter((entry) => entry.isDirectory() && entry.name !== TEMP_DIR);
    for (const dir of [rootTemp, ...tops.map((entry) => path.join(this.root, entry.name, TEMP_DIR))]) {
      const names = await fs.readdir(dir).catch((err) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      });
      for (const name of names) await this.sweepOne(path.join(dir, name), now, result, false);
    }
    return result;
  }

  private async sweepLegacy(dir: string, now: number, result: SweepResult): Promise<void> {
    let entries;
    try {
      entries = await fs.opendir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for await (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await this.sweepLegacy(full, now, result);
      else if (entry.isFile() && TEMP_NAME.test(entry.name)) await this.sweepOne(full, now, result, true);
    }
  }

  private async sweepOne(file: string, now: number, result: SweepResult, legacy: boolean): Promise<void> {
    const match = TEMP_NAME.exec(path.basename(file));
    if (!match) return;
    const [, host, pidText] = match;
    const stat = await fs.lstat(file).catch(() => undefined);
    if (!stat?.isFile()) return;
    const age = now - stat.mtimeMs;
    const pid = Number(pidText);
    // The 24 h limit also covers this host's temps whose pid was reused by a long-running process.
    const stale = age > FOREIGN_TEMP_MAX_AGE_MS
      || (host === HOST && !legacy && !processAlive(pid))
      || (legacy && age > LEGACY_TEMP_MIN_AGE_MS && !processAlive(pid));
    if (!stale) {
      result.kept++;
      return;
    }
    await fs.rm(file, { force: true });
    result.removed++;
  }

  /** A blob's file opened for reading: a FIFO or device put in its place is refused, never waited on. */
  private async openBlob(key: string): Promise<fs.FileHandle> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(this.fileOf(key), fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(key, this.root);
      throw err;
    }
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw new Error(`blob ${key} in ${this.root} is not a regular file`);
    }
    return handle;
  }

  async get(key: string): Promise<Buffer> {
    const handle = await this.openBlob(key);
    try {
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  }

  async readInto(key: string, target: Uint8Array): Promise<number> {
    const handle = await this.openBlob(key);
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
    } catch (err) {
      // Only absence is "no": an I/O or permission error must not pass for a missing blob.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw err;
    }
  }

  async size(key: string): Promise<number> {
    try {
      return (await fs.stat(this.fileOf(key))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobNotFoundError(key, this.root);
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.fileOf(key);
    try {
      await this.io.unlink(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    // The folder lost an entry: the next flush syncs it, so the removal survives a power loss from then on.
    this.unsyncedDirs.add(path.dirname(file));
  }

  async *list(prefix: string): AsyncIterable<string[]> {
    const parts = prefix.split('/').filter(Boolean);
    yield* this.walk(path.join(this.root, ...parts), parts.join('/'));
  }

  /** Files under `dir` (key prefix `key`) in pages of LIST_PAGE, one folder open at a time (memory bounded by a page
   *  and a folder's read buffer, not the store's size). */
  private async *walk(dir: string, key: string): AsyncIterable<string[]> {
    let entries;
    try {
      entries = await fs.opendir(dir, { bufferSize: LIST_PAGE });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw err;
    }
    let page: string[] = [];
    for await (const entry of entries) {
      if (entry.isDirectory()) {
        if (entry.name !== TEMP_DIR) yield* this.walk(path.join(dir, entry.name), key ? `${key}/${entry.name}` : entry.name);
      } else if (entry.isFile() && !entry.name.includes('.tmp-')) {
        page.push(key ? `${key}/${entry.name}` : entry.name);
        if (page.length === LIST_PAGE) {
          yield page;
          page = [];
        }
      }
    }
    if (page.length) yield page;
  }
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await fs.stat(dir)).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

