/**
 * Errors the engine raises on purpose. Callers map them to exit codes and messages:
 * an InputError is the user's input (exit 2), a RepositoryError is damage in stored data (exit 1).
 */
export class InputError extends Error {
  readonly file?: string;
  constructor(message: string, options: { file?: string; cause?: unknown } = {}) {
    super(options.file ? `${options.file}: ${message}` : message, { cause: options.cause });
    this.name = 'InputError';
    this.file = options.file;
  }
}

export class RepositoryError extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'RepositoryError';
  }
}

/** Turns a Node fs error into a one-line InputError naming the file. */
export function fileError(file: string, err: unknown): InputError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const reason =
    code === 'ENOENT' ? 'file not found'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'EISDIR' ? 'is a directory, expected a file'
    : code === 'ELOOP' ? 'too many levels of symbolic links'
    : (err as Error)?.message ?? String(err);
  return new InputError(reason, { file, cause: err });
}

/**
 * A failure of something every VM of a run needs (the repository's storage, the catalog): the VM that hit it
 * fails, and the run stops there, since every later VM would fail the same way. Callbacks given to the engine
 * (the catalog's `onImage`, lookups) throw one to stop a run.
 */
export class RunFault extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'RunFault';
  }
}

/** `onImages` withdrew the batch's images from the repository instead of recording them (nothing vouches any more for
 *  what they reuse): the VMs fail, and no image of theirs is left to reconcile. Stops the run. */
export class ImagesWithdrawn extends RunFault {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'ImagesWithdrawn';
  }
}

/** The repository's storage refused an operation (no space, I/O error, read-only): nothing stored is damaged. */
export class RepositoryStorageError extends RunFault {
  readonly code: string;
  constructor(location: string, code: string, options: { cause?: unknown } = {}) {
    super(`repository ${location}: ${STORAGE_FAULTS[code] ?? ((options.cause as Error)?.message ?? 'failed')} (${code})`, options);
    this.name = 'RepositoryStorageError';
    this.code = code;
  }
}

const STORAGE_FAULTS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'a folder of the repository is missing',
  ENOTDIR: 'a folder of the repository is not a folder',
  EFBIG: 'file too large for this file system or process limit',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files on the system',
  ESTALE: 'stale network file handle',
  ETIMEDOUT: 'timed out',
  EAGAIN: 'resource temporarily unavailable',
  // Object stores (s3-blob-store.ts)
  ENOBUCKET: 'the bucket does not exist',
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host name not found',
  ECONNRESET: 'connection reset',
};

/**
 * Wraps an error a blob store raised (Node's fs errors and the stores that mimic them carry a `code`) into a
 * RepositoryStorageError naming the repository; returns other errors (programming errors) as they are.
 */
export function storageFault(location: string, err: unknown): unknown {
  if (err instanceof RunFault) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) return err;
  return new RepositoryStorageError(location, code, { cause: err });
}
