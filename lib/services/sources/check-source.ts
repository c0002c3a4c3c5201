import fs from 'node:fs/promises';
import path from 'node:path';
import { isInside } from '../../engine/containment';
import { sourceRoot } from '../../engine/sources/inventory';
import { SOURCE_TYPES, type SourceType } from '../../engine/sources/types';
import { AppError } from '../../errors';

export async function checkSource(options: { name: string; type: string; path: string; storage?: string[] }): Promise<{ name: string; type: SourceType; root: string; storage: string[] }> {
  const name = options.name.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new AppError('BAD_INPUT', { message: `source name '${options.name}' is invalid: use letters, digits, '.', '_' or '-' (at most 64)` });
  }
  if (!SOURCE_TYPES.includes(options.type as SourceType)) {
    throw new AppError('BAD_INPUT', { message: `source type '${options.type}' is invalid: use ${SOURCE_TYPES.join(' or ')}` });
  }
  const root = await readableFolder(options.path, 'source folder');
  // A scan walks the whole folder: never the filesystem root or the kernel's pseudo-filesystems.
  if (root === '/' || isSystemFolder(root)) {
    throw new AppError('BAD_INPUT', { message: `${options.path}: a source cannot be ${root === '/' ? 'the root folder' : 'a system folder'} (${root}); name the folder that holds the VM configs` });
  }
  const storage: string[] = [];
  for (const dir of options.storage ?? []) {
    if (!path.isAbsolute(dir)) throw new AppError('BAD_INPUT', { message: `storage folder '${dir}': give it as an absolute path (starting with /)` });
    const real = await readableFolder(dir, 'storage folder');
    // Disks are read only inside these folders: the root or /proc would let any config name any file.
    if (real === '/' || isSystemFolder(real)) {
      throw new AppError('BAD_INPUT', { message: `${dir}: a storage folder cannot be ${real === '/' ? 'the root folder' : 'a system folder'} (${real}); name the folder that holds the disks` });
    }
    if (!storage.includes(real) && real !== root) storage.push(real);
  }
  return { name, type: options.type as SourceType, root, storage };
}

function isSystemFolder(dir: string): boolean {
  return ['/proc', '/sys', '/dev'].some((system) => isInside(system, dir));
}

async function readableFolder(dir: string, what: string): Promise<string> {
  const real = await sourceRoot(dir, what);
  await fs.access(real, fs.constants.R_OK | fs.constants.X_OK).catch(() => {
    throw new AppError('BAD_INPUT', { message: `${dir}: ${what} cannot be read` });
  });
  return real;
}
