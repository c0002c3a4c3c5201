/** Persistent qcow2 bitmaps on real files: qemu-img adds and removes them, qemu-io's writes mark them, qemu-nbd and
 *  nbdinfo read them; a bitmap a killed QEMU left, or a missing one, is refused in one line. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { qemuImg, tempDir } from '../../../test/helpers';
import { addBitmap, bitmapsOf, dirtyRangesOfFile, removeBitmap } from './dirty-bitmaps';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const hasNbdinfo = await run('nbdinfo', ['--version']).then(() => true, () => false);

describe.skipIf(!hasNbdinfo)('qcow2 dirty bitmaps', () => {
  it('marks what is written after the bitmap was added, in a file whose name has commas and equals signs', async () => {
    const file = path.join(await tempDir(), 'disk,file.driver=raw,x.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', file, '64M');
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 1 0 ${4 * MiB}`, file]);
    await addBitmap(file, 'vmdedup-a');
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 2 ${MiB} 4096`, '-c', `write -P 3 ${40 * MiB} ${2 * MiB}`, file]);
    expect(await dirtyRangesOfFile(file, 'vmdedup-a')).toEqual([
      { start: MiB, end: MiB + 65536 }, // the bitmap's granularity: 64 KiB
      { start: 40 * MiB, end: 42 * MiB },
    ]);
    await addBitmap(file, 'vmdedup-b');
    expect(await dirtyRangesOfFile(file, 'vmdedup-b')).toEqual([]);
    expect(await bitmapsOf(file)).toEqual([{ name: 'vmdedup-a', inUse: false, enabled: true }, { name: 'vmdedup-b', inUse: false, enabled: true }]);
    await removeBitmap(file, 'vmdedup-a');
    expect((await bitmapsOf(file)).map((b) => b.name)).toEqual(['vmdedup-b']);
    await expect(dirtyRangesOfFile(file, 'vmdedup-a')).rejects.toThrow(/qemu-nbd.*not found|Bitmap 'vmdedup-a' is not found/);
  });

  it('refuses a bitmap a QEMU that did not close the file left (in use): never a wrong map', async () => {
    const file = path.join(await tempDir(), 'disk.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', file, '16M');
    await addBitmap(file, 'vmdedup-a');
    // qemu-io's abort: the process dies with the file open for writing, as QEMU does under kill -9.
    await run('sh', ['-c', 'ulimit -c 0; exec qemu-io -f qcow2 -c "write -P 4 0 65536" -c abort "$0"', file]).catch(() => undefined);
    expect(await bitmapsOf(file)).toEqual([{ name: 'vmdedup-a', inUse: true, enabled: true }]);
    await expect(dirtyRangesOfFile(file, 'vmdedup-a')).rejects.toThrow(/inconsistent/);
    // It can still be removed (the next backup's housekeeping).
    await removeBitmap(file, 'vmdedup-a');
    expect(await bitmapsOf(file)).toEqual([]);
  });
});
