/**
 * Restores write exactly their own VM's files: identical disks keep their own names, fresh linked clones restore,
 * copy works for every drift kind, a changed base is never reattached under a restored child, warnings name who
 * uses a disk now (later users, broken configs, other sources), and every destination lies inside the target.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { overwrite, writeData } from '../lib/demo/fleet';
import { changedFiles, cli, createTestDatabase, libvirtDomainXml, qemuImg, run, sha256File, snapshotTree, tempDir } from './helpers';

type Json = {
  status: string; message: string; cannotExecute?: string; config: string;
  drift: { disk: string; kind: string; sharedWith: string[]; sharedAtBackup: string[] }[];
  disks: { path: string; action: string; verified: boolean; written: string[]; sharedWith: string[] }[];
};

const domain = (name: string, disks: { file: string; type: string; dev?: string }[]) => libvirtDomainXml(name, `00000000-0000-4000-8000-${createHash('sha256').update(name).digest('hex').slice(0, 12)}`, disks);

const sha = sha256File;

const snapshot = snapshotTree;

const changed = changedFiles;

describe('restore safety', () => {
  let home: string;
  let env: Record<string, string>;
  let kvm: string;
  let images: string;
  let out: string;
  const restore = async (...args: string[]) => {
    const result = await cli(env, ...args, '--json');
    return { ...result, json: result.stdout ? (JSON.parse(result.stdout) as Json) : undefined };
  };
  const backup = async () => {
    const result = await cli(env, 'backup', '--json');
    expect(result.code, result.stderr).toBe(0);
  };
  const guest = async (file: string, format: string) => {
    const raw = path.join(home, `guest-${createHash('sha256').update(file).digest('hex').slice(0, 8)}.raw`);
    await qemuImg('convert', '-f', format, '-O', 'raw', file, raw);
    const digest = await sha(raw);
    await fs.rm(raw);
    return digest;
  };

  beforeAll(async () => {
    home = await tempDir();
    kvm = path.join(home, 'kvm');
    images = path.join(kvm, 'images');
    out = path.join(home, 'out');
    await fs.mkdir(images, { recursive: true });
    // Two blank data disks (identical bytes), two fresh linked clones of one base (identical bytes).
    for (const name of ['a.img', 'b.img']) await fs.writeFile(path.join(images, name), Buffer.alloc(2 * 1024 * 1024));
    await writeData(path.join(home, 'base.raw'), 4 * 1024 * 1024, 3);
    await qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', path.join(home, 'base.raw'), path.join(images, 'base.qcow2'));
    for (const name of ['c1', 'c2']) await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(images, `${name}.qcow2`));
    expect((await fs.readFile(path.join(images, 'c1.qcow2'))).equals(await fs.readFile(path.join(images, 'c2.qcow2')))).toBe(true);
    await writeData(path.join(images, 'shared.raw'), 1024 * 1024, 4);
    await fs.writeFile(path.join(kvm, 'vm1.xml'), domain('vm1', [{ file: 'images/a.img', type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'vm2.xml'), domain('vm2', [{ file: 'images/b.img', type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'c1.xml'), domain('c1', [{ file: 'images/c1.qcow2', type: 'qcow2' }, { file: 'images/shared.raw', type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'c2.xml'), domain('c2', [{ file: 'images/c2.qcow2', type: 'qcow2' }, { file: 'images/shared.raw', type: 'raw' }]));
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', kvm)).code).toBe(0);
    await backup();
  });

  it('identical disks: an in-place restore of vm2 writes b.img only, a folder restore names it b.img', async () => {
    // vm1 writes into its disk after the backup: restoring vm2 must not touch it.
    await overwrite(path.join(images, 'a.img'), 0, 65536, 9);
    await overwrite(path.join(images, 'b.img'), 0, 65536, 10);
    const before = await snapshot(kvm);
    const done = await restore('restore', 'vm2', '--in-place');
    expect(done.code, done.stderr).toBe(0);
    expect(done.json!.disks).toEqual([expect.objectContaining({ path: path.join(images, 'b.img'), written: [path.join(images, 'b.img')], verified: true })]);
    const touched = changed(before, await snapshot(kvm));
    expect(touched).toContain('images/b.img');
    expect(touched.filter((f) => f !== 'images/b.img' && f !== 'vm2.xml')).toEqual([]); // vm1's a.img keeps vm1's writes
    expect((await fs.readFile(path.join(images, 'b.img'))).equals(Buffer.alloc(2 * 1024 * 1024))).toBe(true);

    const folder = await restore('restore', 'vm2', '--target', path.join(out, 'vm2'));
    expect(folder.code, folder.stderr).toBe(0);
    expect((await fs.readdir(path.join(out, 'vm2', 'images'))).sort()).toEqual(['b.img']);
    expect(await fs.readFile(path.join(out, 'vm2', 'vm2.xml'), 'utf8')).toContain(`file='images/b.img'`);
    await fs.writeFile(path.join(images, 'a.img'), Buffer.alloc(2 * 1024 * 1024));
    await fs.writeFile(path.join(images, 'b.img'), Buffer.alloc(2 * 1024 * 1024));
  });

  it('restores the second of two byte-identical fresh linked clones, under its own name', async () => {
    await backup();
    const done = await restore('restore', 'c2', '--target', path.join(out, 'c2'));
    expect(done.code, done.stderr).toBe(0);
    expect((await fs.readdir(path.join(out, 'c2', 'images'))).sort()).toEqual(['c2.qcow2']);
    await qemuImg('check', path.join(out, 'c2', 'images', 'c2.qcow2'));
    expect(await guest(path.join(out, 'c2', 'images', 'c2.qcow2'), 'qcow2')).toBe(await guest(path.join(images, 'c2.qcow2'), 'qcow2'));
  });

  it('copy works for retargeted and parent-changed drift (on the clone whose bytes equal another clone)', async () => {
    await backup();
    const c2xml = path.join(kvm, 'c2.xml');
    const xml = await fs.readFile(c2xml, 'utf8');
    await fs.copyFile(path.join(images, 'shared.raw'), path.join(images, 'shared-v2.raw'));
    await fs.writeFile(c2xml, xml.replace('images/shared.raw', 'images/shared-v2.raw'));
    try {
      const copied = await restore('restore', 'c2', '--target', path.join(out, 'retargeted'), '--confirm-drift', '--choice', 'copy');
      expect(copied.code, copied.stderr).toBe(0);
      expect(copied.json!.drift.map((d) => d.kind)).toEqual(['retargeted']);
      expect(copied.json!.disks.find((d) => d.action === 'copied')!.path).toBe(path.join(out, 'retargeted', 'images', 'shared.raw'));
      expect(await sha(path.join(out, 'retargeted', 'images', 'shared.raw'))).toBe(await sha(path.join(images, 'shared.raw')));
    } finally {
      await fs.writeFile(c2xml, xml);
      await fs.rm(path.join(images, 'shared-v2.raw'));
    }

    const clone = path.join(images, 'c2.qcow2');
    const original = await guest(clone, 'qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(images, 'other.qcow2'), '4M');
    await qemuImg('rebase', '-u', '-b', 'other.qcow2', '-F', 'qcow2', clone);
    try {
      const copied = await restore('restore', 'c2', '--target', path.join(out, 'parent'), '--confirm-drift', '--choice', 'copy');
      expect(copied.code, copied.stderr).toBe(0);
      expect(copied.json!.drift.map((d) => d.kind)).toEqual(['parent-changed']);
      await qemuImg('check', path.join(out, 'parent', 'images', 'c2.qcow2'));
      expect(await guest(path.join(out, 'parent', 'images', 'c2.qcow2'), 'qcow2')).toBe(original);
    } finally {
      await qemuImg('rebase', '-u', '-b', 'base.qcow2', '-F', 'qcow2', clone);
      await fs.rm(path.join(images, 'other.qcow2'));
    }
  });

  it('refuses to reattach a restored linked clone to a base modified since the backup; copy gives the backed-up data', async () => {
    await backup();
    const clone = path.join(images, 'c1.qcow2');
    const original = await guest(clone, 'qcow2');
    const base = path.join(images, 'base.qcow2');
    const baseBytes = await fs.readFile(base);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x7a 0 64k', base]);
    try {
      const plan = await restore('restore', 'c1', '--target', path.join(out, 'rebased'));
      expect(plan.code).toBe(3);
      expect(plan.json!.drift).toEqual([expect.objectContaining({ disk: base, kind: 'modified', sharedWith: ['c2'] })]);
      const refused = await cli(env, 'restore', 'c1', '--target', path.join(out, 'rebased'), '--confirm-drift');
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/base image base\.qcow2 was modified after this backup.*--choice copy/);
      await expect(fs.access(path.join(out, 'rebased', 'images', 'c1.qcow2'))).rejects.toThrow();

      const copied = await restore('restore', 'c1', '--target', path.join(out, 'rebased'), '--confirm-drift', '--choice', 'copy');
      expect(copied.code, copied.stderr).toBe(0);
      expect(await guest(path.join(out, 'rebased', 'images', 'c1.qcow2'), 'qcow2')).toBe(original);
      expect(await sha(path.join(out, 'rebased', 'images', 'base.qcow2'))).toBe(createHash('sha256').update(baseBytes).digest('hex'));
    } finally {
      await fs.writeFile(base, baseBytes);
    }
  });

  it('names who uses a shared disk now: a VM added later, a VM whose config is broken, a VM of another source', async () => {
    await backup();
    const shared = path.join(images, 'shared.raw');
    const saved = await fs.readFile(shared);
    // After the backup: vm3 starts using the shared disk; vm4 uses it too but names a missing disk as well.
    await fs.writeFile(path.join(kvm, 'vm3.xml'), domain('vm3', [{ file: 'images/shared.raw', type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'vm4.xml'), domain('vm4', [{ file: 'images/shared.raw', type: 'raw' }, { file: 'images/gone.raw', type: 'raw' }]));
    // vm5's config does not even parse: it still names the file.
    await fs.writeFile(path.join(kvm, 'vm5.xml'), domain('vm5', [{ file: 'images/shared.raw', type: 'raw' }]).replace('</devices>', '</devics>'));
    await overwrite(shared, 0, 4096, 11);
    try {
      const plan = await restore('restore-plan', 'c1', '--target', path.join(out, 'warn'));
      expect(plan.code, plan.stderr).toBe(0);
      const drift = plan.json!.drift.find((d) => d.disk === shared)!;
      expect(drift.kind).toBe('modified');
      expect([...drift.sharedWith].sort()).toEqual(['c2', 'vm3', 'vm4', 'vm5']);
      expect(drift.sharedAtBackup).toEqual(['c2']);
      expect(plan.json!.message).toMatch(/used by c2, vm3, vm4 and vm5/);
    } finally {
      await fs.writeFile(shared, saved);
      await fs.rm(path.join(kvm, 'vm3.xml'));
      await fs.rm(path.join(kvm, 'vm4.xml'));
      await fs.rm(path.join(kvm, 'vm5.xml'));
    }
  });

  it('counts a VM of another source that reaches the same file', async () => {
    // The second source's folder holds the first (nested datastores): its VM vm9 uses kvm's shared disk.
    const outerDir = path.join(home, 'outer');
    await fs.mkdir(outerDir, { recursive: true });
    await fs.rename(kvm, path.join(outerDir, 'kvm'));
    const moved = path.join(outerDir, 'kvm');
    try {
      const sql = new pg.Client({ connectionString: env.DATABASE_URL });
      await sql.connect();
      await sql.query('UPDATE "Source" SET "path" = $1 WHERE "name" = $2', [moved, 'kvm']);
      await sql.end();
      await fs.writeFile(path.join(outerDir, 'vm9.xml'), domain('vm9', [{ file: 'kvm/images/shared.raw', type: 'raw' }]));
      expect((await cli(env, 'source', 'add', 'outer', '--type', 'libvirt', '--path', outerDir)).code).toBe(0);
      const plan = await restore('restore-plan', 'c1', '--in-place', '--policy', 'overwrite');
      expect(plan.code, plan.stderr).toBe(0);
      const sharedDisk = plan.json!.disks.find((d) => d.path.endsWith('shared.raw'))!;
      expect(sharedDisk.sharedWith).toEqual(expect.arrayContaining(['c2', 'vm9 (source outer)']));
      expect(sharedDisk.sharedWith).not.toContain('c1 (source outer)'); // c1 itself, seen through the other source
      expect(plan.json!.message).toMatch(/vm9 \(source outer\)/);
    } finally {
      const sql = new pg.Client({ connectionString: env.DATABASE_URL });
      await sql.connect();
      await sql.query('DELETE FROM "Source" WHERE "name" = $1', ['outer']);
      await sql.query('UPDATE "Source" SET "path" = $1 WHERE "name" = $2', [kvm, 'kvm']);
      await sql.end();
      await fs.rename(moved, kvm);
      await fs.rm(outerDir, { recursive: true, force: true });
    }
  });

  it('after the source folder moved, destinations follow it and stay inside the target', async () => {
    await backup();
    // The datastore moves; the source is re-pointed at it. The old folder stays (a live config there must not be written).
    const movedDir = path.join(home, 'kvm-moved');
    await fs.cp(kvm, movedDir, { recursive: true });
    const sql = new pg.Client({ connectionString: env.DATABASE_URL });
    await sql.connect();
    await sql.query('UPDATE "Source" SET "path" = $1 WHERE "name" = $2', [movedDir, 'kvm']);
    try {
      const before = await snapshot(kvm);
      const done = await restore('restore', 'vm1', '--target', path.join(out, 'moved'));
      expect(done.code, done.stderr).toBe(0);
      expect(done.json!.config).toBe(path.join(out, 'moved', 'vm1.xml'));
      expect(await fs.readFile(path.join(out, 'moved', 'vm1.xml'), 'utf8')).toContain('<name>vm1</name>');
      expect(changed(before, await snapshot(kvm))).toEqual([]);

      await overwrite(path.join(movedDir, 'images', 'a.img'), 0, 4096, 12);
      const inPlace = await restore('restore', 'vm1', '--in-place');
      expect(inPlace.code, inPlace.stderr).toBe(0);
      expect(inPlace.json!.disks[0].written).toEqual([path.join(movedDir, 'images', 'a.img')]);
      expect((await fs.readFile(path.join(movedDir, 'images', 'a.img'))).equals(await fs.readFile(path.join(images, 'a.img')))).toBe(true);
      expect(changed(before, await snapshot(kvm))).toEqual([]);
    } finally {
      await sql.query('UPDATE "Source" SET "path" = $1 WHERE "name" = $2', [kvm, 'kvm']);
      await sql.end();
      await fs.rm(movedDir, { recursive: true, force: true });
    }
  });

  it('refuses an in-place restore whose folder now leads elsewhere through a symlink', async () => {
    await backup();
    const elsewhere = path.join(home, 'elsewhere');
    await fs.mkdir(elsewhere);
    await fs.rename(images, path.join(kvm, 'images-real'));
    await fs.symlink(elsewhere, images);
    try {
      const before = await snapshot(elsewhere);
      const refused = await cli(env, 'restore', 'vm1', '--in-place', '--confirm-drift');
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/would be written outside/);
      expect(await snapshot(elsewhere)).toEqual(before);
    } finally {
      await fs.rm(images);
      await fs.rename(path.join(kvm, 'images-real'), images);
    }
  });

  it('never writes, in place, a file another VM uses now (its config file now defines another VM)', async () => {
    await backup();
    const xmlPath = path.join(kvm, 'vm1.xml');
    const xml = await fs.readFile(xmlPath, 'utf8');
    await fs.writeFile(xmlPath, xml.replace('<name>vm1</name>', '<name>vm1-renamed</name>'));
    try {
      const before = await snapshot(kvm);
      const refused = await cli(env, 'restore', 'vm1', '--in-place', '--confirm-drift');
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/would be written over a file that vm1-renamed uses now/);
      expect(changed(before, await snapshot(kvm))).toEqual([]);
    } finally {
      await fs.writeFile(xmlPath, xml);
    }
  });

  it('runs again into its own target after an interrupted restore', async () => {
    await backup();
    const target = path.join(out, 'again');
    // What a killed run leaves: the marker of this restore, a folder, and a temp file of a process that is gone.
    await fs.mkdir(path.join(target, 'images'), { recursive: true });
    await fs.writeFile(path.join(target, '.vmdedup-restore.json'), JSON.stringify({ vm: 'vm1', backupId: await lastBackup('vm1') }));
    await fs.writeFile(path.join(target, 'images', '.a.img.vmdedup-999999-0badf00d'), 'partial');
    const again = await restore('restore', 'vm1', '--target', target);
    expect(again.code, again.stderr).toBe(0);
    expect((await fs.readdir(target, { recursive: true })).sort()).toEqual(['images', 'images/a.img', 'vm1.xml']);
    // another restore into that folder is refused: it is not empty and holds no unfinished run
    const other = await cli(env, 'restore', 'vm2', '--target', target);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/target folder is not empty/);
  });

  const lastBackup = async (vm: string) => {
    const list = JSON.parse((await cli(env, 'backups', '--vm', vm, '--json')).stdout) as { backups: { backupId: string }[] };
    return list.backups[0].backupId;
  };
});
