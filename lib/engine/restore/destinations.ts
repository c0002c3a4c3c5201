import { InputError } from '../errors';
import { isInside, resolvedPath } from '../containment';

/** Throws unless `destination`, resolved through symlinks, lies inside one of `areas` (folders, already resolved). */
export async function checkInside(areas: string[], destination: string, what: string): Promise<string> {
  const resolved = await resolvedPath(destination);
  if (!areas.some((area) => isInside(area, resolved) && resolved !== area)) {
    const where = areas.length === 1 ? areas[0] : `the source's folders (${areas.join(', ')})`;
    throw new InputError(`${what} would be written outside ${where} (it resolves to ${resolved}); nothing was written`, { file: destination });
  }
  return resolved;
}
