import fs from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../errors';
import { isInside } from '../sources/inventory';

/**
 * `candidate` as the filesystem resolves it: the nearest existing ancestor through realpath (symlinks followed),
 * then the components that do not exist yet. The last component is kept as it is: a rename replaces a symlink
 * there, it never writes through it.
 */
export async function resolvedPath(candidate: string): Promise<string> {
  const absolute = path.resolve(candidate);
  const parent = path.dirname(absolute);
  const rest: string[] = [];
  for (let current = parent; ; current = path.dirname(current)) {
    const real = await fs.realpath(current).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw new InputError(`cannot be resolved (${err.code ?? err.message})`, { file: current });
    });
    if (real !== undefined) return path.join(real, ...rest.reverse(), path.basename(absolute));
    if (path.dirname(current) === current) return absolute;
    rest.push(path.basename(current));
  }
}

/** The resolved root of a restore: where every file it writes must land. */
export async function resolvedRoot(root: string): Promise<string> {
  const absolute = path.resolve(root);
  return fs.realpath(absolute).catch(async () => resolvedPath(absolute));
}

/** Throws unless `destination`, resolved through symlinks, lies inside `root` (already resolved). */
export async function checkInside(root: string, destination: string, what: string): Promise<string> {
  const resolved = await resolvedPath(destination);
  if (!isInside(root, resolved) || resolved === root) {
    throw new InputError(`${what} would be written outside ${root} (it resolves to ${resolved}); nothing was written`, { file: destination });
  }
  return resolved;
}
