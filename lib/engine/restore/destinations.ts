import { InputError } from '../errors';
import { isInside, resolvedPath } from '../containment';

/** Throws unless `destination`, resolved through symlinks, lies inside `root` (already resolved). */
export async function checkInside(root: string, destination: string, what: string): Promise<string> {
  const resolved = await resolvedPath(destination);
  if (!isInside(root, resolved) || resolved === root) {
    throw new InputError(`${what} would be written outside ${root} (it resolves to ${resolved}); nothing was written`, { file: destination });
  }
  return resolved;
}
