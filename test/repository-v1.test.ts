/**
 * A repository written by format 1 (stored disks carried the first disk's names) still restores every VM
 * correctly: names come from each image's own entries. The fixture was made by the format-1 code from a fleet with
 * byte-identical disks (a.img / b.img), byte-identical fresh linked clones (c1 / c2 on base.qcow2) and VMware
 * linked clones on a sparse base with a flat multi-writer disk; its source folders no longer exist.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, projectRoot, qemuImg, sha256File, tempDir } from './helpers';

type Expected = Record<string, { source: string; files: Record<string, string>; guest: Record<string, string> }>;

const sha = sha256File;

describe('format-1 repository', () => {
  let home: string;
  let env: Record<string, string>;
  let expected: Expected;

  beforeAll(async () => {
    home = await tempDir();
    await fs.cp(path.join(projectRoot, 'test', 'fixtures', 'repository-v1'), path.join(home, 'repository'), { recursive: true });
    expected = JSON.parse(await fs.readFile(path.join(projectRoot, 'test', 'fixtures', 'repository-v1.expected.json'), 'utf8')) as Expected;
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    const rebuilt = await cli(env, 'catalog', 'rebuild');
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(rebuilt.stdout).toMatch(/6 backup images, 2 sources/);
  });

  it('restores every VM to a folder with its own file names and the backed-up bytes', async () => {
    for (const [vm, want] of Object.entries(expected)) {
      const target = path.join(home, 'out', vm);
      const result = await cli(env, 'restore', vm, '--target', target, '--policy', 'overwrite', '--confirm-drift', '--json');
      expect(result.code, `${vm}: ${result.stderr}`).toBe(0);
      const written = (await fs.readdir(target, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.relative(target, path.join(e.parentPath, e.name))).sort();
      expect(written, vm).toEqual(Object.keys(want.files).sort());
      for (const [file, digest] of Object.entries(want.files)) expect(await sha(path.join(target, file)), `${vm} ${file}`).toBe(digest);
      for (const [file, digest] of Object.entries(want.guest)) {
        const format = file.endsWith('.qcow2') ? 'qcow2' : file.endsWith('.vmdk') ? 'vmdk' : 'raw';
        if (format !== 'raw') await qemuImg('check', path.join(target, file));
        const raw = path.join(home, 'guest.raw');
        await qemuImg('convert', '-f', format, '-O', 'raw', path.join(target, file), raw);
        expect(await sha(raw), `${vm} ${file} (guest view)`).toBe(digest);
      }
    }
  });

  it('restores with the source gone: common disks are missing drift, copy restores them beside the VM', async () => {
    const target = path.join(home, 'out-copy', 'c2');
    const plan = await cli(env, 'restore', 'c2', '--target', target, '--json');
    expect(plan.code).toBe(3);
    const json = JSON.parse(plan.stdout) as { message: string; drift: { kind: string }[] };
    expect(json.drift.map((d) => d.kind)).toEqual(['missing']);
    expect(json.message).toMatch(/source 'kvm' could not be read/);
    const copied = await cli(env, 'restore', 'c2', '--target', target, '--confirm-drift', '--choice', 'copy', '--json');
    expect(copied.code, copied.stderr).toBe(0);
    expect(await sha(path.join(target, 'images', 'c2.qcow2'))).toBe(expected.c2.files['images/c2.qcow2']);
    await qemuImg('check', path.join(target, 'images', 'c2.qcow2'));
  });
});
