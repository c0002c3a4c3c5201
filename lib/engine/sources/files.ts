import type { BigIntStats } from 'node:fs';
import fsSync, { constants } from 'node:fs';
import fs from 'node:fs/promises';
import { InputError, fileError } from '../errors';
import type { HeaderReader } from '../formats/detect';

/** Domain XMLs and .vmx files are kilobytes; anything past this is not a VM config and is not read. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

type FileType = { isFile(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSymbolicLink(): boolean };

/** "a FIFO", "a socket"…: what a file that is not a regular file is, in words. */
function fileKind(stat: FileType): string {
  return stat.isFIFO() ? 'a FIFO'
    : stat.isSocket() ? 'a socket'
    : stat.isCharacterDevice() ? 'a character device'
    : stat.isBlockDevice() ? 'a block device'
    : stat.isDirectory() ? 'a directory'
    : stat.isSymbolicLink() ? 'a symbolic link'
    : 'a special file';
}

export function notRegularFile(file: string, stat: FileType): InputError {
  return new InputError(`is ${fileKind(stat)}, not a regular file: refused without opening it`, { file });
}

/**
 * Opens a disk file (or a config) for reading without ever blocking. `file` is a canonical path (realpath). A
 * FIFO, socket or device is refused from lstat, before open (opening a FIFO blocks a libuv thread until a writer
 * comes, and no signal can end the run; opening some devices has side effects). A file swapped for one between
 * the lstat and the open is caught by O_NONBLOCK (a FIFO opens at once), O_NOFOLLOW, and the fstat of what was
 * opened. On NFS the open also revalidates the file's attributes (close-to-open), so the fstat is fresh.
 */
export async function openDiskFile(file: string): Promise<fs.FileHandle> {
  return (await openDiskFileAndStat(file)).handle;
}

/** openDiskFile, with the fstat it made of the opened file and the moment just before it (for versionOf). */
export async function openDiskFileAndStat(file: string): Promise<{ handle: fs.FileHandle; stat: BigIntStats; statAtNs: bigint }> {
  const before = await fs.lstat(file).catch((err) => { throw fileError(file, err); });
  if (!before.isFile()) throw notRegularFile(file, before);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (err) {
    throw fileError(file, err);
  }
  try {
    // Taken before the stat: the moment can only be earlier than the stat, never flatter the file's age.
    const statAtNs = BigInt(Date.now()) * 1_000_000n;
    const opened = await handle.stat({ bigint: true }).catch((err) => { throw fileError(file, err); });
    if (!opened.isFile()) throw notRegularFile(file, opened);
    return { handle, stat: opened, statAtNs };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * openDiskFileAndStat's checks in the same order, with synchronous calls: lstat, refused unless a regular file,
 * opened without blocking or following, refused unless what was opened is a regular file. A scan reads thousands
 * of configs of a kilobyte and stats thousands of disks, and each call through the thread pool costs ten times the
 * call itself (measured: 10,000 configs in 0.35 s against 2–4 s). Runs `read` on the open file, then closes it;
 * errors other than InputError name the file.
 */
function withRegularFileSync<T>(file: string, read: (fd: number, stat: BigIntStats, statAtNs: bigint) => T, check?: (stat: { size: number | bigint }) => void): T {
  let opened: { fd: number; stat: BigIntStats; statAtNs: bigint } | undefined;
  try {
    opened = openRegularFileSync(file, check);
    return read(opened.fd, opened.stat, opened.statAtNs);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw fileError(file, err);
  } finally {
    if (opened) fsSync.closeSync(opened.fd);
  }
}

/** withRegularFileSync's checks and open (the caller closes the file; errors other than InputError are Node's). */
function openRegularFileSync(file: string, check?: (stat: { size: number | bigint }) => void): { fd: number; stat: BigIntStats; statAtNs: bigint } {
  const before = fsSync.lstatSync(file);
  if (!before.isFile()) throw notRegularFile(file, before);
  check?.(before);
  const fd = fsSync.openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  try {
    const statAtNs = BigInt(Date.now()) * 1_000_000n;
    const stat = fsSync.fstatSync(fd, { bigint: true });
    if (!stat.isFile()) throw notRegularFile(file, stat);
    check?.(stat);
    return { fd, stat, statAtNs };
  } catch (err) {
    fsSync.closeSync(fd);
    throw err;
  }
}

/**
 * A disk file opened as openDiskFileAndStat opens it, for reading its header with synchronous calls: a scan reads
 * the headers of thousands of small overlays, and through the thread pool the calls were most of it (a pool of
 * 10,000 VMs, scanned without a memo: 7.5 s with FileHandles, 3.3 s so). `read` runs with the file open; it is
 * closed after.
 */
export async function withDiskHeader<T>(file: string, read: (reader: HeaderReader, stat: BigIntStats, statAtNs: bigint) => Promise<T>): Promise<T> {
  let opened: { fd: number; stat: BigIntStats; statAtNs: bigint };
  try {
    opened = openRegularFileSync(file);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw fileError(file, err);
  }
  const { fd } = opened;
  const reader: HeaderReader = {
    stat: async () => ({ size: Number(fsSync.fstatSync(fd).size) }),
    read: async (buffer, offset, length, position) => ({ bytesRead: fsSync.readSync(fd, buffer, offset, length, position) }),
  };
  try {
    return await read(reader, opened.stat, opened.statAtNs);
  } finally {
    fsSync.closeSync(fd);
  }
}

/** Reads a config file (refused like a disk file when it is not a regular file, and past MAX_CONFIG_BYTES). */
export async function readConfigFile(file: string): Promise<Buffer> {
  const tooBig = (size: number) => new InputError(`config file is ${(size / 1024 / 1024).toFixed(1)} MiB, over the ${MAX_CONFIG_BYTES / 1024 / 1024} MiB limit for a VM config: not read`, { file });
  return withRegularFileSync(file, (fd, stat) => {
    // One byte more than the limit: a file that grew since the fstat is still caught.
    const buffer = Buffer.alloc(Math.min(Number(stat.size), MAX_CONFIG_BYTES) + 1);
    let length = 0;
    while (length < buffer.length) {
      const bytesRead = fsSync.readSync(fd, buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_CONFIG_BYTES) throw tooBig(length);
    return buffer.subarray(0, length);
  }, ({ size }) => { if (Number(size) > MAX_CONFIG_BYTES) throw tooBig(Number(size)); });
}

/**
 * A disk file's stat, for a scan that may not need to read the file (scan-memo.ts): an lstat on a local filesystem;
 * elsewhere the fstat of the file opened as openDiskFileAndStat opens it (on NFS the open revalidates), closed again.
 */
export async function statDiskFile(file: string, localDevices: Map<bigint, boolean> = new Map()): Promise<{ stat: BigIntStats; statAtNs: bigint }> {
  // An lstat alone: the memo's question (is this the file whose header was read?) needs no open, and a scan of a
  // pool asks it of every overlay. Whatever is not a regular file is refused unopened, as openRegularFileSync does.
  // Only on a filesystem known to be local, though: on NFS (SMB, FUSE, Ceph…) an lstat may answer from the client's
  // attribute cache (up to a minute), where the open revalidates it (close-to-open). That stat is the disk's version
  // token, which the backup's fast path trusts to skip reading the disk: a stale one is a changed disk not backed up.
  try {
    const statAtNs = BigInt(Date.now()) * 1_000_000n;
    const stat = fsSync.lstatSync(file, { bigint: true });
    if (!stat.isFile()) throw notRegularFile(file, stat);
    if (isLocalFilesystem(file, stat.dev, localDevices)) return { stat, statAtNs };
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw fileError(file, err);
  }
  return withRegularFileSync(file, (_fd, stat, statAtNs) => ({ stat, statAtNs }));
}

/** statfs magic numbers of local filesystems (linux/magic.h), whose lstat is as fresh as an open's fstat. */
const LOCAL_FILESYSTEMS = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x2fc12fc1, // zfs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0x794c7630, // overlayfs
  0xf2f52010, // f2fs
  0x3153464a, // jfs
  0x52654973, // reiserfs
  0xca451a4e, // bcachefs
]);

/** Whether the filesystem a file is on is local, asked once per device (per scan: the caller's map). */
function isLocalFilesystem(file: string, dev: bigint, known: Map<bigint, boolean>): boolean {
  let local = known.get(dev);
  if (local === undefined) {
    try {
      local = LOCAL_FILESYSTEMS.has(Number(fsSync.statfsSync(file).type));
    } catch {
      local = false;
    }
    known.set(dev, local);
  }
  return local;
}
