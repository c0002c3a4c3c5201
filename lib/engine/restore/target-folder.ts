import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../errors';

/** Written into a folder restore's target before anything else and removed when it is complete: a restore that
 *  was interrupted (kill -9, power loss, a damaged chunk) can be run again into its own folder. */
export const RESTORE_MARKER = '.vmdedup-restore.json';

export type RestoreIdentity = { vm: string; backupId: string };
/** The marker's content: the restore, and the process that wrote it (a resume waits until that one is gone). */
export type RestoreMarker = RestoreIdentity & { pid?: number };

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

/**
 * The marker of `dir`, if it holds one this code wrote: a regular file (a FIFO there would block the read forever,
 * a symlink would be written through on resume), small, naming a restore. Anything else is no marker.
 */
export async function readMarker(dir: string): Promise<RestoreMarker | undefined> {
  const handle = await fs.open(path.join(dir, RESTORE_MARKER), fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.size > 64 * 1024) return undefined;
    const parsed = JSON.parse(await handle.readFile('utf8')) as Partial<RestoreMarker> | null;
    if (typeof parsed?.vm !== 'string' || typeof parsed.backupId !== 'string') return undefined;
    return { vm: parsed.vm, backupId: parsed.backupId, pid: typeof parsed.pid === 'number' ? parsed.pid : undefined };
  } catch {
    return undefined;
  } finally {
    await handle.close();
  }
}
