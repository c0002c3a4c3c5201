/**
 * Folder sources with storage folders (`source add --storage`): libvirt's standard layout, configs in one folder and
 * disks in two others, backs up and restores; nothing outside the source's folders is read or written.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, libvirtDomainXml, qemuImg, semiCompressible, sha256File, snapshotTree, tempDir, changedFiles } from './helpers';

type BackupJson = {
  backups: { vm: string; disks: { path: string; common: boolean; action: 'stored' | 'referenced'; bytesRead: number }[] }[];
  failures: { vm: string; error: string }[];
};
type RestoreJson = { status: string; disks: { path: string; action: string }[] };

describe('a folder source with storage folders (libvirt standard layout)', () => {
  let home: string;
  let env: Record<string, string>;
  let configs: string;
  let images: string;
  let pool2: string;
  let outside: string;
  const uuid = (i: number) => `7d1c2a3e-0000-4000-8000-${String(i).padStart(12, '0')}`;

  beforeAll(async () => {
    home = await tempDir();
    configs = path.join(home, 'etc/libvirt/qemu');
    images = path.join(home, 'var/lib/libvirt/images');
    pool2 = path.join(home, 'srv/pool2');
    outside = path.join(home, 'elsewhere');
    for (const dir of [configs, images, pool2, outside]) await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(images, 'base.raw'), semiCompressible(4 << 20, 1));
    await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', path.join(images, 'base.raw'), path.join(images, 'base.qcow2'));
    await fs.rm(path.join(images, 'base.raw'));
    // Linked clones on one base, in two storage folders; one shared config disk; absolute paths, as libvirt writes them.
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', path.join(images, 'base.qcow2'), '-F', 'qcow2', path.join(images, 'web.qcow2'));
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', path.join(images, 'base.qcow2'), '-F', 'qcow2', path.join(pool2, 'db.qcow2'));
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', path.join(images, 'base.qcow2'), '-F', 'qcow2', path.join(pool2, 'rogue.qcow2'));
    await fs.writeFile(path.join(pool2, 'site.raw'), semiCompressible(1 << 20, 2));
    await fs.writeFile(path.join(outside, 'secret.raw'), semiCompressible(1 << 20, 3));
    const site = { file: path.join(pool2, 'site.raw'), type: 'raw' };
    await fs.writeFile(path.join(configs, 'web.xml'), libvirtDomainXml('web', uuid(1), [{ file: path.join(images, 'web.qcow2'), type: 'qcow2' }, site]));
    await fs.writeFile(path.join(configs, 'db.xml'), libvirtDomainXml('db', uuid(2), [{ file: path.join(pool2, 'db.qcow2'), type: 'qcow2' }, site]));
    // A VM that also names a file outside every folder of the source: refused, the file never read.
    await fs.writeFile(path.join(configs, 'rogue.xml'), libvirtDomainXml('rogue', uuid(3), [{ file: path.join(pool2, 'rogue.qcow2'), type: 'qcow2' }, { file: path.join(outside, 'secret.raw') }]));
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
  });

  it('refuses storage folders that cannot be one, with one line each', async () => {
    for (const [dir, message] of [
      ['/', /storage folder cannot be the root folder/],
      ['/proc', /storage folder cannot be a system folder/],
      [path.join(home, 'missing'), /storage folder does not exist/],
      ['relative/dir', /absolute path/],
    ] as const) {
      const result = await cli(env, 'source', 'add', 'bad', '--type', 'libvirt', '--path', configs, '--storage', dir);
      expect(result.code, dir).toBe(2);
      expect(result.stderr, dir).toMatch(message);
      expect(result.stderr, dir).not.toMatch(/\n\s+at /); // no stack trace
    }
    expect((await cli(env, 'source', 'list', '--json')).stdout).toContain('"sources": []');
  });

  it('without its storage folders, the source reads no disk outside its config folder', async () => {
    expect((await cli(env, 'source', 'add', 'std', '--type', 'libvirt', '--path', configs)).code).toBe(0);
    const result = await cli(env, 'backup', '--json');
    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups).toEqual([]);
    expect(report.failures.map((f) => f.vm).sort()).toEqual(['db', 'rogue', 'web']);
    for (const failure of report.failures) expect(failure.error).toMatch(/outside the source root/);
  });

  it('backs up the standard layout: the common base stored once, the VM naming a file outside refused', async () => {
    const edit = await cli(env, 'source', 'edit', 'std', '--storage', images, '--storage', pool2);
    expect(edit.code, edit.stderr).toBe(0);
    const listed = JSON.parse((await cli(env, 'source', 'list', '--json')).stdout) as { sources: { name: string; storage: string[] }[] };
    expect(listed.sources).toEqual([expect.objectContaining({ name: 'std', storage: [images, pool2] })]);
    const secretBefore = await fs.stat(path.join(outside, 'secret.raw'));

    const result = await cli(env, 'backup', '--json');
    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups.map((b) => b.vm).sort()).toEqual(['db', 'web']);
    expect(report.failures).toEqual([expect.objectContaining({ vm: 'rogue', error: expect.stringMatching(/secret\.raw.*outside the source's folders|outside the source's folders.*secret\.raw/s) })]);
    const base = report.backups.flatMap((b) => b.disks).filter((d) => d.path === path.join(images, 'base.qcow2'));
    expect(base.map((d) => d.action).sort()).toEqual(['referenced', 'stored']);
    expect(base.every((d) => d.common)).toBe(true);
    expect(base.find((d) => d.action === 'referenced')!.bytesRead).toBe(0);
    // Never opened: a read would have moved its access time (relatime moves it at least once after a change).
    expect((await fs.stat(path.join(outside, 'secret.raw'))).atimeMs).toBe(secretBefore.atimeMs);
  });

  it('backs up one VM of the source without scanning the rest, and a rebuilt catalog keeps the source\'s folders', async () => {
    const one = await cli(env, 'backup', '--vm', 'web', '--json');
    expect(one.code, one.stderr).toBe(0);
    expect((JSON.parse(one.stdout) as BackupJson).backups.map((b) => b.vm)).toEqual(['web']);
    const fresh = { ...env, DATABASE_URL: await createTestDatabase() };
    const rebuilt = await cli(fresh, 'catalog', 'rebuild');
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const listed = JSON.parse((await cli(fresh, 'source', 'list', '--json')).stdout) as { sources: { name: string; path: string; storage: string[] }[] };
    // Not the folder holding them all (the test's home; on a real host, /): a scan must never walk that.
    expect(listed.sources).toEqual([{ name: 'std', type: 'libvirt', path: configs, storage: [images, pool2] }]);
    const inventory = JSON.parse((await cli(fresh, 'inventory', '--json')).stdout) as { sources: { path: string; storage: string[]; vms: { name: string; error?: string }[] }[] };
    expect(inventory.sources[0]).toMatchObject({ path: configs, storage: [images, pool2] });
    expect(inventory.sources[0].vms.filter((vm) => !vm.error).map((vm) => vm.name).sort()).toEqual(['db', 'web']);
  });

  it('restores to a folder in the same layout, and refuses a target inside a storage folder', async () => {
    const target = path.join(home, 'restored');
    const done = await cli(env, 'restore', 'db', '--target', target, '--json');
    expect(done.code, done.stderr).toBe(0);
    const rel = (file: string) => path.join(target, path.relative(home, file));
    await qemuImg('check', rel(path.join(pool2, 'db.qcow2')));
    await qemuImg('compare', rel(path.join(pool2, 'db.qcow2')), path.join(pool2, 'db.qcow2'));
    expect(await fs.readFile(rel(path.join(configs, 'db.xml')), 'utf8')).toContain('<name>db</name>');

    const inside = await cli(env, 'restore', 'db', '--target', path.join(pool2, 'restore-here'), '--json');
    expect(inside.code).toBe(2);
    expect(inside.stderr).toMatch(/target folder lies inside the source .*pool2/);
  });

  it('restores in place over a changed private disk: its bytes come back, pointers stay absolute, nothing else changes', async () => {
    const disk = path.join(pool2, 'db.qcow2');
    const backedUp = await sha256File(disk);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x7e 0 65536', disk]);
    expect(await sha256File(disk)).not.toBe(backedUp);
    const before = await snapshotTree(home);

    const done = await cli(env, 'restore', 'db', '--in-place', '--json');
    expect(done.code, done.stderr).toBe(0);
    expect((JSON.parse(done.stdout) as RestoreJson).status).toBe('restored');
    expect(await sha256File(disk)).toBe(backedUp);
    const xml = await fs.readFile(path.join(configs, 'db.xml'), 'utf8');
    expect(xml).toContain(`file='${disk}'`);
    expect(xml).toContain(`file='${path.join(pool2, 'site.raw')}'`);
    const changed = changedFiles(before, await snapshotTree(home)).filter((name) => !name.startsWith('vmdedup/'));
    // The config is written back as backed up (the same bytes here), the shared disks are left alone.
    expect(changed).toEqual([path.relative(home, disk)]);
  });

  it('restores in place a backup made before a storage folder widened the source', async () => {
    // A second source whose disks lived in its config folder; adding a storage folder beside it moves its root.
    const fleet = path.join(home, 'old/fleet');
    await fs.mkdir(path.join(fleet, 'images'), { recursive: true });
    await fs.writeFile(path.join(fleet, 'images/app.raw'), semiCompressible(1 << 20, 9));
    await fs.writeFile(path.join(fleet, 'app.xml'), libvirtDomainXml('app', uuid(9), [{ file: 'images/app.raw' }]));
    expect((await cli(env, 'source', 'add', 'old', '--type', 'libvirt', '--path', fleet)).code).toBe(0);
    expect((await cli(env, 'backup', '--source', 'old', '--json')).code).toBe(0);
    const backedUp = await sha256File(path.join(fleet, 'images/app.raw'));
    await fs.mkdir(path.join(home, 'old/more'));
    expect((await cli(env, 'source', 'edit', 'old', '--storage', path.join(home, 'old/more'))).code).toBe(0);
    await fs.writeFile(path.join(fleet, 'images/app.raw'), semiCompressible(1 << 20, 10));

    const done = await cli(env, 'restore', 'app', '--in-place', '--json');
    expect(done.code, done.stderr).toBe(0);
    expect(await sha256File(path.join(fleet, 'images/app.raw'))).toBe(backedUp);
    // Not at the new root's idea of the old names (old/images/app.raw, old/app.xml).
    await expect(fs.access(path.join(home, 'old/images'))).rejects.toThrow();
    await expect(fs.access(path.join(home, 'old/app.xml'))).rejects.toThrow();
    expect(await fs.readFile(path.join(fleet, 'app.xml'), 'utf8')).toContain(`file='images/app.raw'`);

    // Backed up again under the wider root: the disk's relative name changed (read in full once), nothing fails.
    const again = await cli(env, 'backup', '--source', 'old', '--json');
    expect(again.code, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout) as BackupJson & { backups: { disks: { identifier?: string }[] }[] };
    expect(report.failures).toEqual([]);
    expect(report.backups[0].disks).toEqual([expect.objectContaining({ path: path.join(fleet, 'images/app.raw'), identifier: 'path:fleet/images/app.raw' })]);
    const backups = JSON.parse((await cli(env, 'backups', '--vm', 'app', '--json')).stdout) as { backups: unknown[] };
    expect(backups.backups).toHaveLength(2);
  });
});
