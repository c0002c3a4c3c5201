import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isS3Location } from './engine/repository/s3-location';
import { AppError } from './errors';

/** Where vmdedup keeps its data: the embedded catalog, the repository and the demo fleet. */
export function vmdedupHome(): string {
  return path.resolve(/*turbopackIgnore: true*/ process.env.VMDEDUP_HOME || './data');
}

/** What the last scan of a source parsed (engine/sources/scan-memo.ts): a cache, private to this host. */
export function scanMemoFile(sourceId: string): string {
  return path.join(vmdedupHome(), 'cache', `scan-${sourceId.replace(/[^A-Za-z0-9-]/g, '_')}.json`);
}

/**
 * Where the repository is (VMDEDUP_REPOSITORY): a folder (default $VMDEDUP_HOME/repository), or a bucket and prefix
 * of an S3-compatible object store, `s3://bucket/prefix` (engine/repository/s3-blob-store.ts).
 */
export function repositoryLocation(): string {
  const given = process.env.VMDEDUP_REPOSITORY;
  if (!given) return path.join(vmdedupHome(), 'repository');
  return normalizedLocation(given);
}

/** A repository location as given (VMDEDUP_REPOSITORY, sync --to): s3://… as it is, a folder made absolute. */
export function normalizedLocation(location: string): string {
  return isS3Location(location) ? location : path.resolve(location);
}

/** Where restore drills restore to (VMDEDUP_DRILL_DIR; default the system's temp folder): it needs room for a VM. */
export function drillScratchDir(): string {
  return path.resolve(/*turbopackIgnore: true*/ process.env.VMDEDUP_DRILL_DIR || os.tmpdir());
}

/** Restores write with O_DIRECT where the filesystem takes it; VMDEDUP_DIRECT_IO=0 sends writes through the page cache. */
export function restoreDirectIo(): boolean {
  return process.env.VMDEDUP_DIRECT_IO !== '0';
}

/** A running job whose worker has not reported for this long is failed (VMDEDUP_JOB_STALE_SECONDS, default 120). */
export function jobStaleSeconds(): number {
  const value = Number(process.env.VMDEDUP_JOB_STALE_SECONDS);
  return Number.isFinite(value) && value >= 2 ? value : 120;
}

/**
 * Folders under which restores requested from the browser may write (VMDEDUP_RESTORE_ROOTS, separated by ':';
 * default VMDEDUP_HOME/restores). In-place restores are not affected (they go where the VM is). The CLI is not
 * confined: whoever runs it already has the machine's rights.
 */
export function restoreRoots(): string[] {
  const roots = (process.env.VMDEDUP_RESTORE_ROOTS ?? '').split(':').filter(Boolean).map((dir) => path.resolve(dir));
  return roots.length ? roots : [path.join(vmdedupHome(), 'restores')];
}

/**
 * The passphrase (or recovery key) of an encrypted repository: the contents of VMDEDUP_PASSWORD_FILE (one trailing
 * newline dropped), else VMDEDUP_PASSWORD. Never from the catalog. Undefined when neither is set; a file that cannot be
 * read is an error naming it.
 */
export function repositorySecret(): string | undefined {
  return secretFrom('VMDEDUP_PASSWORD_FILE', 'VMDEDUP_PASSWORD');
}

/** A new passphrase for `vmdedup key add` (VMDEDUP_NEW_PASSWORD_FILE, else VMDEDUP_NEW_PASSWORD), or `file` when given. */
export function newRepositorySecret(file?: string): string | undefined {
  return file ? readSecretFile(file, '--password-file') : secretFrom('VMDEDUP_NEW_PASSWORD_FILE', 'VMDEDUP_NEW_PASSWORD');
}

function secretFrom(fileVariable: string, valueVariable: string): string | undefined {
  const file = process.env[fileVariable];
  if (file) return readSecretFile(file, fileVariable);
  return process.env[valueVariable] || undefined;
}

/** A passphrase file is small: a bigger one is not one (and is not read into memory whole). */
const SECRET_FILE_MAX_BYTES = 64 * 1024;

function readSecretFile(file: string, what: string): string {
  let text: string;
  let fd: number | undefined;
  try {
    // Non-blocking, then checked: a FIFO or a device named here is refused instead of waited on forever.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new AppError('BAD_INPUT', { message: `${what}: ${file} is not a regular file` });
    if (stat.size > SECRET_FILE_MAX_BYTES) throw new AppError('BAD_INPUT', { message: `${what}: ${file} is ${stat.size} bytes, more than a passphrase file holds (${SECRET_FILE_MAX_BYTES})` });
    text = fs.readFileSync(fd, 'utf8');
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw new AppError('BAD_INPUT', { message: `${what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (!secret) throw new AppError('BAD_INPUT', { message: `${what}: ${file} is empty` });
  return secret;
}

/** The passphrase of a `sync` target (VMDEDUP_SYNC_PASSWORD_FILE, else VMDEDUP_SYNC_PASSWORD), else the repository's own. */
export function syncTargetSecret(): string | undefined {
  return secretFrom('VMDEDUP_SYNC_PASSWORD_FILE', 'VMDEDUP_SYNC_PASSWORD') ?? repositorySecret();
}

/** What earlier syncs from one repository to another copied (engine/sync/sync.ts SyncState): a cache. */
export function syncStateFile(sourceId: string, targetId: string): string {
  return path.join(vmdedupHome(), 'cache', `sync-${sourceId.replace(/[^A-Za-z0-9-]/g, '_')}-${targetId.replace(/[^A-Za-z0-9-]/g, '_')}.json`);
}
