import fs from 'node:fs/promises';
import { isInside } from '../../engine/containment';
import { sourceRoot } from '../../engine/sources/inventory';
import { SOURCE_TYPES, type SourceType } from '../../engine/sources/types';
import { AppError } from '../../errors';

export async function checkSource(options: { name: string; type: string; path: string }): Promise<{ name: string; type: SourceType; root: string }> {
  const name = options.name.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new AppError('BAD_INPUT', { message: `source name '${options.name}' is invalid: use letters, digits, '.', '_' or '-' (at most 64)` });
  }
  if (!SOURCE_TYPES.includes(options.type as SourceType)) {
    throw new AppError('BAD_INPUT', { message: `source type '${options.type}' is invalid: use ${SOURCE_TYPES.join(' or ')}` });
  }
  const root = await sourceRoot(options.path);
  // A scan walks the whole folder: never the filesystem root or the kernel's pseudo-filesystems.
  if (root === '/' || ['/proc', '/sys', '/dev'].some((system) => isInside(system, root))) {
    throw new AppError('BAD_INPUT', { message: `${options.path}: a source cannot be ${root === '/' ? 'the root folder' : 'a system folder'} (${root}); name the folder that holds the VM configs` });
  }
  await fs.access(root, fs.constants.R_OK | fs.constants.X_OK).catch(() => {
    throw new AppError('BAD_INPUT', { message: `${options.path}: source folder cannot be read` });
  });
  return { name, type: options.type as SourceType, root };
}
