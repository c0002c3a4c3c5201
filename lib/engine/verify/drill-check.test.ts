import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuCheck } from './drill-check';

const hasQemuImg = (() => { try { execFileSync('qemu-img', ['--version']); return true; } catch { return false; } })();

describe.skipIf(!hasQemuImg)('restore drill: qemu-img checks stay in the drill folder', () => {
  let dir: string;
  let root: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'drill-check-'));
    root = path.join(dir, 'drill');
    await mkdir(root);
    await mkdir(path.join(dir, 'live'));
  });
  afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

  const qcow2 = (file: string, backing?: string, backingFormat = 'qcow2') =>
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', ...(backing ? ['-u', '-b', backing, '-F', backingFormat] : []), file, '1M']);

  it('a chain that leaves the folder is reported without being opened (a FIFO there hung qemu-img check, and the drill, for ever)', async () => {
    const fifo = path.join(dir, 'live', 'fifo');
    execFileSync('mkfifo', [fifo]);
    const child = path.join(root, 'child.qcow2');
    qcow2(child, fifo, 'raw');
    const outcome = await Promise.race([
      qemuCheck(child, 'qcow2', root),
      new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 8000)),
    ]);
    expect(outcome, 'qemu-img opened the live file outside the drill folder').not.toBe('hung');
    expect((outcome as string[]).join('; ')).toMatch(/leaves the drill's folder/);
  }, 15_000);

  it('a chain inside the folder checks clean; a live parent outside it is a problem', async () => {
    const base = path.join(root, 'base.qcow2');
    qcow2(base);
    const child = path.join(root, 'inside.qcow2');
    qcow2(child, 'base.qcow2');
    expect(await qemuCheck(child, 'qcow2', root)).toEqual([]);
    const live = path.join(dir, 'live', 'base.qcow2');
    qcow2(live);
    const leaving = path.join(root, 'leaving.qcow2');
    qcow2(leaving, live);
    expect((await qemuCheck(leaving, 'qcow2', root)).join('; ')).toMatch(/leaves the drill's folder/);
  });
});
