import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { tempDir } from '../../../test/helpers';
import { statDiskFile } from './files';

describe('statDiskFile (the scan memo\'s check of a remembered disk)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('on a local filesystem: one lstat, the file never opened', async () => {
    const file = path.join(await tempDir(), 'disk.raw');
    await fs.writeFile(file, Buffer.alloc(4096));
    const open = vi.spyOn(fsSync, 'openSync');
    const { stat } = await statDiskFile(file);
    expect(stat.isFile()).toBe(true);
    expect(open).not.toHaveBeenCalled();
  });

  it('on NFS (or any filesystem not known to be local): opened and fstat-ed, as the open revalidates cached attributes (close-to-open); a bare lstat may answer from the attribute cache and make a changed disk look unchanged to the fast path', async () => {
    const file = path.join(await tempDir(), 'disk.raw');
    await fs.writeFile(file, Buffer.alloc(4096));
    const realStatfs = fsSync.statfsSync;
    vi.spyOn(fsSync, 'statfsSync').mockImplementation(((p: fsSync.PathLike, options?: fsSync.StatFsOptions) => {
      const real = realStatfs(p, options as never) as fsSync.StatsFs;
      return Object.assign(Object.create(Object.getPrototypeOf(real)), real, { type: 0x6969 }); // NFS_SUPER_MAGIC
    }) as typeof fsSync.statfsSync);
    const open = vi.spyOn(fsSync, 'openSync');
    const { stat } = await statDiskFile(file, new Map());
    expect(stat.isFile()).toBe(true);
    expect(open).toHaveBeenCalled();
  });

  it('a FIFO in place of a disk is refused unopened, on either path', async () => {
    const dir = await tempDir();
    const fifo = path.join(dir, 'disk.raw');
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [fifo]);
    const open = vi.spyOn(fsSync, 'openSync');
    await expect(statDiskFile(fifo)).rejects.toThrow(/FIFO/);
    expect(open).not.toHaveBeenCalled();
  });
});
