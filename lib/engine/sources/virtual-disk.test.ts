import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers';
import { DiskResolver } from './virtual-disk';

/** libc's answer: the path, or the error code. */
const libc = (file: string) => { try { return fsSync.realpathSync.native(file); } catch (err) { return (err as NodeJS.ErrnoException).code; } };
const ours = (resolver: DiskResolver, file: string) => resolver.realpath(file).catch((err: NodeJS.ErrnoException) => err.code);

describe('DiskResolver.realpath (its folder resolved once, its name by an lstat) answers as libc realpath does', () => {
  it('for odd spellings: .., ., trailing slashes, symlinked names and folders, dangling links, FIFOs', async () => {
    const root = await fs.realpath(await tempDir());
    await fs.mkdir(path.join(root, 'images/sub'), { recursive: true });
    await fs.writeFile(path.join(root, 'images/disk.raw'), 'x');
    await fs.symlink('images', path.join(root, 'linked'));
    await fs.symlink('disk.raw', path.join(root, 'images/alias.raw'));
    await fs.symlink('sub', path.join(root, 'images/subdir'));
    await fs.symlink('nowhere.raw', path.join(root, 'images/dangling.raw'));
    execFileSync('mkfifo', [path.join(root, 'images/fifo.raw')]);
    const spellings = [
      'images/disk.raw', 'images/disk.raw/', 'images/disk.raw//', 'images/disk.raw/.', 'images/./disk.raw', 'images/sub/../disk.raw',
      'linked/disk.raw', 'linked/disk.raw/', 'linked/sub/../disk.raw', 'linked/alias.raw', 'linked/alias.raw/', 'images/subdir', 'images/subdir/',
      'images/subdir/../disk.raw', 'images/dangling.raw', 'images/missing.raw', 'missing/disk.raw', 'images/fifo.raw', 'images/fifo.raw/', 'images/sub/',
      'images/disk.raw/x',
    ];
    // Each on a fresh resolver, and all on one (its folders resolved once).
    const shared = new DiskResolver({ base: root, areas: [root] });
    for (const spelling of spellings) {
      const file = `${root}/${spelling}`;
      expect(await ours(new DiskResolver({ base: root, areas: [root] }), file), spelling).toBe(libc(file));
      expect(await ours(shared, file), spelling).toBe(libc(file));
    }
  });
});
