import fs from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../errors';

/** Written into a folder restore's target before anything else and removed when it is complete: a restore that
 *  was interrupted (kill -9, power loss, a damaged chunk) can be run again into its own folder. */
export const RESTORE_MARKER = '.vmdedup-restore.json';

export type RestoreIdentity = { vm: string; backupId: string };

/**
 * A restore folder must be new or empty, so a restore never mixes its files with others; or hold the marker of an
 * unfinished run of this same restore (then 'resume': the leftovers are this restore's own).
 */
export async function checkTargetFolder(dir: string, restore?: RestoreIdentity): Promise<'new' | 'resume'> {
  const entries: string[] = await fs.readdir(dir).catch((err) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    if (code === 'ENOTDIR') throw new InputError('target is not a folder', { file: dir });
    throw new InputError(`target folder cannot be read (${code ?? (err as Error).message})`, { file: dir });
  });
  if (entries.length === 0) return 'new';
  if (entries.includes(RESTORE_MARKER)) {
    const marker = await readMarker(dir);
    if (restore && marker?.vm === restore.vm && marker.backupId === restore.backupId) return 'resume';
    if (marker) throw new InputError(`target folder holds an unfinished restore of ${marker.vm} (backup ${marker.backupId}): run that restore again to finish it, or remove the folder`, { file: dir });
  }
  throw new InputError('target folder is not empty', { file: dir });
}

async function readMarker(dir: string): Promise<RestoreIdentity | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(path.join(dir, RESTORE_MARKER), 'utf8')) as Partial<RestoreIdentity>;
    return typeof parsed.vm === 'string' && typeof parsed.backupId === 'string' ? { vm: parsed.vm, backupId: parsed.backupId } : undefined;
  } catch {
    return undefined;
  }
}
