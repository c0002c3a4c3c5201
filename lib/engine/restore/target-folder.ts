import fs from 'node:fs/promises';
import { InputError } from '../errors';

/** A restore folder must be new or empty: a restore never mixes its files with others. */
export async function checkTargetFolder(dir: string): Promise<void> {
  const entries = await fs.readdir(dir).catch((err) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    if (code === 'ENOTDIR') throw new InputError('target is not a folder', { file: dir });
    throw new InputError(`target folder cannot be read (${code ?? (err as Error).message})`, { file: dir });
  });
  if (entries.length) throw new InputError('target folder is not empty', { file: dir });
}
