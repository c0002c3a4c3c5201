/** The embedded catalog: first process starts it, others connect, simultaneous first starts are safe. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, tempDir } from './helpers';

describe('embedded catalog database', () => {
  let home: string;
  afterAll(async () => {
    if (home) await cli({ VMDEDUP_HOME: home, DATABASE_URL: '' }, 'db', 'stop');
  });

  it('survives three processes starting it at once on a fresh home, and outlives them', async () => {
    home = await tempDir('vmdedup-home-');
    const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
    const src = await tempDir('vmdedup-src-'); // the VMs' folder is not vmdedup's: outside its home
    const results = await Promise.all([
      cli(env, 'source', 'add', 'a', '--type', 'libvirt', '--path', src),
      cli(env, 'source', 'add', 'b', '--type', 'libvirt', '--path', src),
      cli(env, 'source', 'list', '--json'),
    ]);
    for (const result of results) expect(result, result.stderr).toMatchObject({ code: 0, stderr: '' });
    // the server outlived the processes that started it, and holds what both wrote
    const status = await cli(env, 'db', 'status');
    expect(status.stdout).toMatch(/running on 127\.0\.0\.1:\d+/);
    const list = JSON.parse((await cli(env, 'source', 'list', '--json')).stdout) as { sources: { name: string }[] };
    expect(list.sources.map((s) => s.name)).toEqual(['a', 'b']);
    // no leftover half-initialised cluster folders
    expect((await fs.readdir(path.join(home, 'catalog'))).sort()).toEqual(['pgdata']);

    expect((await cli(env, 'db', 'stop')).stdout).toMatch(/stopped/);
    expect((await cli(env, 'db', 'status')).stdout).toMatch(/stopped/);
    // the next command starts it again, data intact
    const relisted = JSON.parse((await cli(env, 'source', 'list', '--json')).stdout) as { sources: { name: string }[] };
    expect(relisted.sources).toHaveLength(2);
  });
});
