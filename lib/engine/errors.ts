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
