/**
 * Adversarial checks of storage folders: what a backup may read, and a restore may write, once a source's disks may
 * live outside its config folder.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import { Repository } from '../lib/engine/repository/repository';
import { rebuildCatalog } from '../lib/services/backups/rebuild-catalog';
import { listSources } from '../lib/services/sources/list-sources';
import { bareImagePack, cli, createMigratedCatalog, createTestDatabase, libvirtDomainXml, semiCompressible, tempDir } from './helpers';

type BackupJson = { backups: { vm: string }[]; failures: { vm: string; error: string }[] };

const uuid = (i: number) => `7d1c2a3e-0000-4000-8000-${String(i).padStart(12, '0')}`;

async function sql(url: string, text: string, values: unknown[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text, values);
  } finally {
    await client.end();
  }
}

describe('storage folders, adversarially', () => {
  let home: string;
  let env: Record<string, string>;
  let configs: string;
  let images: string;
  let outside: string;

  beforeAll(async () => {
    home = await tempDir();
    configs = path.join(home, 'etc/libvirt/qemu');
    images = path.join(home, 'var/lib/libvirt/images');
    outside = path.join(home, 'elsewhere');
    for (const dir of [configs, images, outside]) await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(images, 'web.raw'), semiCompressible(1 << 20, 1));
    await fs.writeFile(path.join(outside, 'secret.raw'), semiCompressible(1 << 20, 3));
    await fs.writeFile(path.join(configs, 'web.xml'), libvirtDomainXml('web', uuid(1), [{ file: path.join(images, 'web.raw') }]));
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'std', '--type', 'libvirt', '--path', configs, '--storage', images)).code).toBe(0);
    const backup = await cli(env, 'backup', '--json');
    expect(backup.code, backup.stderr).toBe(0);
  });

  it('bad --storage values: one clear line each, never a stack trace', async () => {
    const file = path.join(home, 'a-file');
    await fs.writeFile(file, 'x');
    const fifo = path.join(home, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    const many = Array.from({ length: 1000 }, () => ['--storage', images]).flat();
    for (const [args, message] of [
      [['--storage', file], /storage folder is not a folder/],
      [['--storage', fifo], /storage folder is not a folder/],
      [['--storage'], /storage/],
      [['--storage', ''], /absolute path/],
    ] as const) {
      const result = await cli(env, 'source', 'add', 'bad', '--type', 'libvirt', '--path', configs, ...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    // The same folder 1000 times: stored once.
    const dup = await cli(env, 'source', 'add', 'dup', '--type', 'libvirt', '--path', outside, ...many);
    expect(dup.code, dup.stderr).toBe(0);
    const listed = JSON.parse((await cli(env, 'source', 'list', '--json')).stdout) as { sources: { name: string; storage: string[] }[] };
    expect(listed.sources.find((s) => s.name === 'dup')!.storage).toEqual([images]);
    await sql(env.DATABASE_URL, `DELETE FROM "Source" WHERE "name" = 'dup'`);
  });

  it('a symlink in a storage folder that leads out is never read', async () => {
    const link = path.join(images, 'link.raw');
    await fs.symlink(path.join(outside, 'secret.raw'), link);
    const xml = path.join(configs, 'sneaky.xml');
    await fs.writeFile(xml, libvirtDomainXml('sneaky', uuid(2), [{ file: link }]));
    try {
      const report = JSON.parse((await cli(env, 'backup', '--vm', 'sneaky', '--json')).stdout) as BackupJson;
      expect(report.backups).toEqual([]);
      expect(report.failures[0].error).toMatch(/symlink leads outside/);
    } finally {
      await fs.rm(xml);
      await fs.rm(link);
    }
  });

  it('a folder restore never lands in the folders of another source, even one that cannot be read now', async () => {
    const other = path.join(home, 'other/qemu');
    const otherImages = path.join(home, 'other/images');
    await fs.mkdir(other, { recursive: true });
    await fs.mkdir(otherImages, { recursive: true });
    expect((await cli(env, 'source', 'add', 'other', '--type', 'libvirt', '--path', other, '--storage', otherImages)).code).toBe(0);
    const readable = await cli(env, 'restore-plan', 'web', '--target', path.join(otherImages, 'here'), '--json');
    expect(readable.code).toBe(2);
    expect(readable.stderr).toMatch(/target folder lies inside the source/);
    // Its storage folder gone (an unmounted share): the source cannot be scanned, its config folder is still its own.
    await fs.rm(otherImages, { recursive: true });
    const target = path.join(other, 'here');
    const result = await cli(env, 'restore-plan', 'web', '--target', target, '--json');
    expect(result.code, result.stdout).toBe(2);
    expect(result.stderr).toMatch(/target folder lies inside the source/);
    await fs.mkdir(otherImages);
  });

  it('a source renamed since the backup: the restore scans its folders, never the folder holding them all', async () => {
    // A config outside the source's folders, naming the source's disk: never read as one of the source's VMs.
    const stray = path.join(outside, 'stray.xml');
    await fs.writeFile(stray, libvirtDomainXml('stray', uuid(5), [{ file: path.join(images, 'web.raw') }]));
    await sql(env.DATABASE_URL, `UPDATE "Source" SET "name" = 'renamed' WHERE "name" = 'std'`);
    try {
      const result = await cli(env, 'restore-plan', 'web', '--in-place', '--json');
      const plan = JSON.parse(result.stdout) as { disks: { path: string; sharedWith: string[] }[] };
      expect(plan.disks.map((d) => d.path)).toEqual([path.join(images, 'web.raw')]);
      expect(plan.disks[0].sharedWith).not.toContain('stray');
    } finally {
      await sql(env.DATABASE_URL, `UPDATE "Source" SET "name" = 'std' WHERE "name" = 'renamed'`);
      await fs.rm(stray);
    }
  });
  it('two sources sharing a storage folder: an in-place restore never writes over a disk the other source uses', async () => {
    const shared = path.join(home, 'shared');
    const a = path.join(home, 'src-a');
    const b = path.join(home, 'src-b');
    for (const dir of [shared, a, b]) await fs.mkdir(dir, { recursive: true });
    const disk = path.join(shared, 'both.raw');
    await fs.writeFile(disk, semiCompressible(1 << 20, 20));
    await fs.writeFile(path.join(a, 'va.xml'), libvirtDomainXml('va', uuid(20), [{ file: disk }]));
    await fs.writeFile(path.join(b, 'vb.xml'), libvirtDomainXml('vb', uuid(21), [{ file: disk }]));
    expect((await cli(env, 'source', 'add', 'a', '--type', 'libvirt', '--path', a, '--storage', shared)).code).toBe(0);
    expect((await cli(env, 'source', 'add', 'b', '--type', 'libvirt', '--path', b, '--storage', shared)).code).toBe(0);
    const backup = await cli(env, 'backup', '--source', 'a', '--json');
    expect(backup.code, backup.stderr).toBe(0);
    await fs.writeFile(disk, semiCompressible(1 << 20, 21));
    const changed = await fs.readFile(disk);
    // Seen as common (vb of source b uses it): no-overwrite reattaches it as it is now.
    const result = await cli(env, 'restore', 'va', '--in-place', '--confirm-drift', '--json');
    expect(result.code, result.stderr).toBe(0);
    const done = JSON.parse(result.stdout) as { disks: { common: boolean; action: string; sharedWith: string[] }[] };
    expect(done.disks).toEqual([expect.objectContaining({ common: true, action: 'reattached', sharedWith: ['vb (source b)'] })]);
    expect((await fs.readFile(disk)).equals(changed)).toBe(true);
  });

  it('a VM whose disk sat in a storage folder since removed from its source: in place refused, nothing written', async () => {
    const cfg = path.join(home, 'gone/cfg');
    const pool = path.join(home, 'gone/pool');
    for (const dir of [cfg, pool]) await fs.mkdir(dir, { recursive: true });
    const disk = path.join(pool, 'g.raw');
    await fs.writeFile(disk, semiCompressible(1 << 20, 30));
    await fs.writeFile(path.join(cfg, 'g.xml'), libvirtDomainXml('g', uuid(30), [{ file: disk }]));
    expect((await cli(env, 'source', 'add', 'gone', '--type', 'libvirt', '--path', cfg, '--storage', pool)).code).toBe(0);
    expect((await cli(env, 'backup', '--source', 'gone', '--json')).code).toBe(0);
    expect((await cli(env, 'source', 'edit', 'gone', '--no-storage')).code).toBe(0);
    await fs.writeFile(disk, semiCompressible(1 << 20, 31));
    const changed = await fs.readFile(disk);
    const result = await cli(env, 'restore', 'g', '--in-place', '--confirm-drift', '--json');
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/outside/);
    expect((await fs.readFile(disk)).equals(changed)).toBe(true);
  });
});

describe('a rebuilt catalog and storage folders', () => {
  it('gets back the folders of the newest image of a source, however many images came before', async () => {
    const { url, db } = await createMigratedCatalog();
    const pool = new pg.Pool({ connectionString: url });
    try {
      const dir = await tempDir();
      const repo = await Repository.openOrInit(new FsBlobStore(dir));
      // 300 images made before the source had a storage folder, then 3 after (the source then root /).
      const before = bareImagePack(300, new Date('2026-01-01T00:00:00Z'));
      const after = bareImagePack(3, new Date('2026-02-01T00:00:00Z')).map((image) => ({
        ...image, source: { ...image.source, path: '/', configFolder: '/src', storage: ['/data/images'] },
        vm: { ...image.vm, configPath: `/src/${image.vm.name}.xml`, relativeConfigPath: `src/${image.vm.name}.xml` },
      }));
      await repo.putBackupImages(before);
      await repo.putBackupImages(after);
      await rebuildCatalog(pool, { repo, location: dir });
      const sources = await listSources(pool);
      expect(sources.map(({ name, path: dir2, storage }) => ({ name, path: dir2, storage }))).toEqual([{ name: 'pool', path: '/src', storage: ['/data/images'] }]);
    } finally {
      await pool.end();
      await db.$disconnect();
    }
  });
});
