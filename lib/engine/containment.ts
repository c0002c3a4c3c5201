/**
 * Path containment, the one place that says whether a path lies inside a folder: lexically (isInside) and as the
 * filesystem resolves it, symlinks followed (resolvedPath, resolvedRoot). Sources, restores and the catalog's
 * confinement checks all use these.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { InputError } from './errors';

/** Whether `candidate` is `root` or lies under it, comparing the paths as written (no symlinks resolved). */
export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

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
