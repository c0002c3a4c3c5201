import { InputError, RepositoryError, RepositoryStorageError } from './engine/errors';

/** UNAVAILABLE: a part the server relies on (the job worker) does not answer; the user is told which. */
export type AppErrorCode = 'BAD_INPUT' | 'NOT_FOUND' | 'CONFLICT' | 'FORBIDDEN' | 'REPOSITORY' | 'UNAVAILABLE' | 'INTERNAL';

/** An expected error: `message` is for logs, `userMessage` is shown to the user as it is. */
export class AppError extends Error {
  readonly code: AppErrorCode;
  readonly userMessage: string;
  constructor(code: AppErrorCode, options: { message: string; userMessage?: string; cause?: unknown }) {
    super(options.message, { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.userMessage = options.userMessage ?? options.message;
  }
}

/** Maps any error to an AppError; unknown errors become INTERNAL. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof InputError) return new AppError('BAD_INPUT', { message: err.message, cause: err });
  if (err instanceof RepositoryError || err instanceof RepositoryStorageError) return new AppError('REPOSITORY', { message: err.message, cause: err });
  return new AppError('INTERNAL', { message: err instanceof Error ? err.message : String(err), cause: err });
}

export function isUserError(error: AppError): boolean {
  return error.code === 'BAD_INPUT' || error.code === 'NOT_FOUND' || error.code === 'CONFLICT' || error.code === 'FORBIDDEN';
}
