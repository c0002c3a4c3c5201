import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { deadPid, tempDir } from '../../../test/helpers';
import { RESTORE_MARKER, checkTargetFolder, claimMarker, readMarker } from './target-folder';

const restore = { vm: 'vm01', backupId: '20261201T120000Z-abcdef' };

describe('restore folder claims under kill -9', () => {
  it('a claim whose writer died before it became the marker leaves the folder new, and the next claim sweeps it', async () => {
    const dir = await tempDir();
    const claim = path.join(dir, `${RESTORE_MARKER}.claim-${await deadPid()}-0123abcd`);
    await fs.writeFile(claim, JSON.stringify(restore));
    expect(await checkTargetFolder(dir, restore)).toBe('new');
    await claimMarker(dir, JSON.stringify({ ...restore, pid: process.pid }));
    expect(await fs.readdir(dir)).toEqual([RESTORE_MARKER]);
    expect(await readMarker(dir)).toEqual({ ...restore, pid: process.pid });
    expect(await checkTargetFolder(dir, restore)).toBe('resume');
  });

  it('the marker appears whole: a second claim of the folder is refused and leaves nothing of its own', async () => {
    const dir = await tempDir();
    await claimMarker(dir, JSON.stringify({ ...restore, pid: process.pid }));
    await expect(claimMarker(dir, JSON.stringify({ vm: 'vm02', backupId: 'other', pid: process.pid }))).rejects.toThrow(/another restore started writing into this folder/);
    expect(await fs.readdir(dir)).toEqual([RESTORE_MARKER]);
    expect(await readMarker(dir)).toMatchObject(restore);
  });

  it('a claim of a live writer is not swept: the folder is not new', async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, `${RESTORE_MARKER}.claim-${process.pid}-0123abcd`), '');
    await expect(checkTargetFolder(dir, restore)).rejects.toThrow(/target folder is not empty/);
  });
});
