/** The request header through which proxy.ts tells pages the path asked for (to come back to after sign-in). */
export const REQUESTED_PATH_HEADER = 'x-vmdedup-requested-path';

/** Only same-site paths: an absolute callback URL would let a link send a signed-in user elsewhere. */
export function safeCallbackPath(value: unknown): string {
  const path = typeof value === 'string' ? value : '/';
  return path.startsWith('/') && !path.startsWith('//') && !path.startsWith('/\\') ? path : '/';
}
