import fs from 'node:fs/promises';
import path from 'node:path';
import { isInside } from '../../engine/containment';
import { sourceRoot } from '../../engine/sources/inventory';
import { libvirtConfigFolder, virsh } from '../../engine/sources/libvirt-host';
import { SOURCE_TYPES, type SourceType } from '../../engine/sources/types';
import { AppError } from '../../errors';

export async function checkSource(options: { name: string; type: string; path?: string; storage?: string[]; uri?: string | null }): Promise<{ name: string; type: SourceType; root: string; storage: string[]; uri: string | null }> {
  const name = options.name.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new AppError('BAD_INPUT', { message: `source name '${options.name}' is invalid: use letters, digits, '.', '_' or '-' (at most 64)` });
  }
  if (!SOURCE_TYPES.includes(options.type as SourceType)) {
    throw new AppError('BAD_INPUT', { message: `source type '${options.type}' is invalid: use ${SOURCE_TYPES.join(' or ')}` });
  }
  const uri = options.uri?.trim() || null;
  if (uri && options.type !== 'libvirt') throw new AppError('BAD_INPUT', { message: `a --uri source is a libvirt connection: use --type libvirt` });
  if (!uri && !options.path) throw new AppError('BAD_INPUT', { message: 'a source needs the folder of its VM configs (--path <dir>) or a libvirt connection (--uri qemu:///system)' });
  let root: string;
  if (uri) {
    // Persistent domains' XML lives there (the catalog's config paths name it); the connection must answer now.
    const configFolder = (() => {
      try {
        return libvirtConfigFolder(uri);
      } catch (err) {
        throw new AppError('BAD_INPUT', { message: (err as Error).message });
      }
    })();
    if (options.path && path.resolve(options.path) !== configFolder) throw new AppError('BAD_INPUT', { message: `a --uri source reads its domains from libvirt: leave out --path (its configs are in ${configFolder})` });
    await virsh(uri, ['uri'], { timeoutMs: 30_000 }).catch((err: Error) => {
      throw new AppError('BAD_INPUT', { message: `libvirt connection ${uri} does not answer: ${err.message} (is libvirtd running?)` });
    });
    root = await readableFolder(configFolder, `libvirt's folder of domain XML`);
  } else root = await readableFolder(options.path!, 'source folder');
  // A scan walks the whole folder: never the filesystem root or the kernel's pseudo-filesystems.
  if (root === '/' || isSystemFolder(root)) {
    throw new AppError('BAD_INPUT', { message: `${options.path ?? root}: a source cannot be ${root === '/' ? 'the root folder' : 'a system folder'} (${root}); name the folder that holds the VM configs` });
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
  return { name, type: options.type as SourceType, root, storage, uri };
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
