import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { InputError } from '../errors';
import { processAlive } from '../process-alive';

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
  const listed: string[] = await fs.readdir(dir).catch((err) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    if (code === 'ENOTDIR') throw new InputError('target is not a folder', { file: dir });
    throw new InputError(`target folder cannot be read (${code ?? (err as Error).message})`, { file: dir });
  });
  // A claim whose writer died before it became the marker (see claimMarker) is nothing: the folder is still new.
  const entries = listed.filter((entry) => !isAbandonedClaim(entry));
  if (entries.length === 0) return 'new';
  if (entries.includes(RESTORE_MARKER)) {
    const marker = await readMarker(dir);
    if (restore && marker?.vm === restore.vm && marker.backupId === restore.backupId) return 'resume';
    if (marker) throw new InputError(`target folder holds an unfinished restore of ${marker.vm} (backup ${marker.backupId}): run that restore again to finish it, or remove the folder`, { file: dir });
  }
  throw new InputError('target folder is not empty', { file: dir });
}

/** A marker's content is written under this name first, then linked to the marker's name (see claimMarker). */
const CLAIM_NAME = new RegExp(`^${RESTORE_MARKER.replace(/\./g, '\\.')}\\.claim-(\\d+)-[0-9a-f]{8}$`);

/** A marker's claim file whose writer is gone (a kill -9 between writing it and linking or removing it). */
export function isAbandonedClaim(entry: string): boolean {
  const match = CLAIM_NAME.exec(entry);
  return match !== null && !processAlive(Number(match[1]));
}

/**
 * Claims a new restore folder: the marker appears whole or not at all. An exclusive create followed by a write
 * left an empty marker to a kill -9 between the two, and the folder was refused ever after ("not empty"). The
 * content is written to a claim file and hard-linked to the marker's name, which fails if another restore claimed
 * the folder first; a claim left by a dead writer is ignored and swept.
 */
export async function claimMarker(dir: string, content: string): Promise<void> {
  for (const entry of await fs.readdir(dir)) if (isAbandonedClaim(entry)) await fs.rm(path.join(dir, entry), { force: true });
  const claim = path.join(dir, `${RESTORE_MARKER}.claim-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await fs.open(claim, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.link(claim, path.join(dir, RESTORE_MARKER));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new InputError('another restore started writing into this folder', { file: dir });
    throw err;
  } finally {
    await fs.rm(claim, { force: true });
  }
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
