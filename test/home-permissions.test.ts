/**
 * VMDEDUP_HOME and the repository are the owner's alone: a home or repository open to others is tightened (with a
 * line saying so), symlinks in it are not followed, and files made afterwards are private.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prepareHome } from '../lib/home';
import { tempDir } from './helpers';

const modeOf = async (file: string) => (await fs.lstat(file)).mode & 0o777;

describe('prepareHome', () => {
  let saved: { umask: number; env: NodeJS.ProcessEnv };
  beforeEach(() => { saved = { umask: process.umask(), env: { ...process.env } }; });
  afterEach(() => {
    process.umask(saved.umask);
    process.env = saved.env;
  });

  it('tightens a home and a repository open to others, and says so; symlinks are not followed', async () => {
    const top = await tempDir();
    const home = path.join(top, 'home');
    const repository = path.join(top, 'elsewhere', 'repository');
    const outsider = path.join(top, 'outsider.txt');
    await fs.mkdir(path.join(home, 'fleet', 'images'), { recursive: true, mode: 0o755 });
    await fs.mkdir(path.join(repository, 'chunks'), { recursive: true, mode: 0o755 });
    await fs.writeFile(path.join(home, 'fleet', 'images', 'disk.raw'), 'x', { mode: 0o644 });
    await fs.writeFile(path.join(home, 'fleet', 'run.sh'), 'x', { mode: 0o755 });
    await fs.writeFile(path.join(repository, 'config.json'), '{}', { mode: 0o644 });
    await fs.writeFile(outsider, 'not ours', { mode: 0o644 });
    await fs.symlink(outsider, path.join(home, 'link-out'));
    await fs.chmod(home, 0o755);
    await fs.chmod(repository, 0o755);
    process.env.VMDEDUP_HOME = home;
    process.env.VMDEDUP_REPOSITORY = repository;

    const notices = await prepareHome();
    expect(notices).toHaveLength(2);
    expect(notices[0]).toMatch(new RegExp(`tightened permissions under ${home}: \\d+ files and folders were open to other users`));
    expect(notices[1]).toMatch(new RegExp(`tightened permissions of the repository ${repository}`));
    const homeMode = process.getuid?.() === 0 ? 0o711 : 0o700;
    expect(await modeOf(home)).toBe(homeMode);
    expect(await modeOf(path.join(home, 'fleet'))).toBe(0o700);
    expect(await modeOf(path.join(home, 'fleet', 'images', 'disk.raw'))).toBe(0o600);
    expect(await modeOf(path.join(home, 'fleet', 'run.sh'))).toBe(0o700);
    expect(await modeOf(repository)).toBe(0o700);
    expect(await modeOf(path.join(repository, 'chunks'))).toBe(0o700);
    expect(await modeOf(path.join(repository, 'config.json'))).toBe(0o600);
    expect(await modeOf(outsider)).toBe(0o644); // reached only through a symlink: not ours

    // Done once: a second call finds nothing to tighten, and what is made now is private.
    expect(await prepareHome()).toEqual([]);
    await fs.writeFile(path.join(home, 'new-file'), 'x');
    expect(await modeOf(path.join(home, 'new-file'))).toBe(0o600);
  });

  it('makes a missing home private', async () => {
    const home = path.join(await tempDir(), 'a', 'home');
    process.env.VMDEDUP_HOME = home;
    delete process.env.VMDEDUP_REPOSITORY;
    expect(await prepareHome()).toEqual([]);
    expect(await modeOf(home)).toBe(process.getuid?.() === 0 ? 0o711 : 0o700);
  });
});
