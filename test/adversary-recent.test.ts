/**
 * Adversarial checks of recent changes: holes of sparse files skipped by a backup, a restored child's parent
 * pointer kept as written, `restore --as`, and in-place restores through a libvirt connection.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, libvirtDomainXml, qemuImg, semiCompressible, sha256File, tempDir } from './helpers';
import { URI, guestFiles, virsh } from './libvirt-guest';

const run = promisify(execFile);
const MiB = 1024 ** 2;

/** SHA-256 of a file of any size (streamed). */
async function hashOf(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

type BackupJson = { backups: { vm: string; disks: { path: string; bytesRead: number; logicalBytes: number }[] }[]; failures: { vm: string; error: string }[] };

describe('holes of sparse files', () => {
  let home: string;
  let fleet: string;
  let env: Record<string, string>;
  const uuid = (i: number) => `7d1c2a3e-0000-4000-8000-${String(i).padStart(12, '0')}`;

  beforeAll(async () => {
    home = await tempDir();
    fleet = path.join(home, 'fleet');
    await fs.mkdir(path.join(fleet, 'images'), { recursive: true });
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'lab', '--type', 'libvirt', '--path', fleet)).code).toBe(0);
  });

  const defineVm = async (name: string, i: number, disks: { file: string; type?: string }[]) =>
    fs.writeFile(path.join(fleet, `${name}.xml`), libvirtDomainXml(name, uuid(i), disks));

  const backupAndCompare = async (name: string, files: string[], extra: string[] = []) => {
    const result = await cli(env, 'backup', '--vm', name, '--json', ...extra);
    expect(result.code, result.stderr).toBe(0);
    const target = path.join(home, `restored-${name}-${Date.now()}`);
    const restored = await cli(env, 'restore', name, '--target', target, '--json');
    expect(restored.code, restored.stderr).toBe(0);
    for (const file of files) {
      const copy = path.join(target, path.relative(fleet, file));
      expect((await fs.stat(copy)).size, file).toBe((await fs.stat(file)).size);
      expect(await sha256File(copy), file).toBe(await sha256File(file));
    }
    return JSON.parse(result.stdout) as BackupJson;
  };

  it('odd shapes: a 1-byte file, holes ending mid-block, data in the last partial block, a sparse qcow2', async () => {
    const one = path.join(fleet, 'images/one.raw');
    await fs.writeFile(one, 'x');
    const odd = path.join(fleet, 'images/odd.raw');
    const h = await fs.open(odd, 'w');
    await h.truncate(40 * MiB + 777);
    await h.write(Buffer.from('middle'), 0, 6, 10 * MiB + 4096 + 3); // a hole ending inside a block
    await h.write(Buffer.from('tail'), 0, 4, 40 * MiB + 770); // data in the last, partial block
    await h.close();
    const q = path.join(fleet, 'images/sparse.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', q, '64M');
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 30M 64k', q]);
    await defineVm('odd', 1, [{ file: one }, { file: odd }, { file: q, type: 'qcow2' }]);
    await backupAndCompare('odd', [one, odd, q]);
  });

  it('data written into a hole while the disk is being read is in the backup (or the backup re-reads)', async () => {
    const big = path.join(fleet, 'images/race.raw');
    const h = await fs.open(big, 'w');
    await h.truncate(1024 * MiB);
    // Data in the middle to keep the reader busy; holes before and after it.
    for (let at = 200; at < 800; at += 64) await h.write(semiCompressible(32 * MiB, at), 0, 32 * MiB, at * MiB);
    await h.close();
    await defineVm('race', 2, [{ file: big }]);
    const backup = cli(env, 'backup', '--vm', 'race', '--json');
    // Writes into the holes at both ends while the backup runs (the later one after the map was taken).
    const writer = (async () => {
      const w = await fs.open(big, 'r+');
      try {
        for (let i = 0; i < 40; i++) {
          await new Promise((r) => setTimeout(r, 50));
          await w.write(Buffer.alloc(4096, i + 1), 0, 4096, (900 + i) * MiB);
          await w.write(Buffer.alloc(4096, i + 1), 0, 4096, (10 + i) * MiB);
        }
      } finally {
        await w.close();
      }
    })();
    const [result] = await Promise.all([backup, writer]);
    // Either stored (then it must restore to what the file held at some point: re-read after the writes), or refused.
    if (result.code !== 0) {
      expect(result.stderr).toMatch(/changed while it was being read/);
      return;
    }
    const target = path.join(home, 'restored-race');
    expect((await cli(env, 'restore', 'race', '--target', target, '--json')).code).toBe(0);
    // The backup finished after the writer: the restore must be the final content.
    expect(await hashOf(path.join(target, path.relative(fleet, big)))).toBe(await hashOf(big));
  }, 120_000);

  it('a file truncated shorter and extended again between backups restores as it is', async () => {
    const f = path.join(fleet, 'images/regrow.raw');
    const h = await fs.open(f, 'w');
    await h.truncate(64 * MiB);
    await h.write(semiCompressible(MiB, 9), 0, MiB, 50 * MiB);
    await h.close();
    await defineVm('regrow', 3, [{ file: f }]);
    await backupAndCompare('regrow', [f]);
    await fs.truncate(f, 20 * MiB);
    await fs.truncate(f, 64 * MiB);
    await backupAndCompare('regrow', [f]);
  });

  it('without qemu-img (or with one that fails) everything is read and the backup is right', async () => {
    const f = path.join(fleet, 'images/noqemu.raw');
    const h = await fs.open(f, 'w');
    await h.truncate(32 * MiB);
    await h.write(semiCompressible(MiB, 4), 0, MiB, 3 * MiB);
    await h.close();
    await defineVm('noqemu', 4, [{ file: f }]);
    const bin = path.join(home, 'fakebin');
    await fs.mkdir(bin, { recursive: true });
    // qemu-img that prints half a map and fails
    await fs.writeFile(path.join(bin, 'qemu-img'), '#!/bin/sh\necho \'[{ "start": 0, "length": 33554432, "depth": 0, "present": false, "zero": true, "data": false\'\nexit 1\n', { mode: 0o755 });
    const result = await cli({ ...env, PATH: `${bin}:${process.env.PATH}` }, 'backup', '--vm', 'noqemu', '--json');
    expect(result.code, result.stderr).toBe(0);
    const target = path.join(home, 'restored-noqemu');
    expect((await cli(env, 'restore', 'noqemu', '--target', target, '--json')).code).toBe(0);
    expect(await sha256File(path.join(target, path.relative(fleet, f)))).toBe(await sha256File(f));
  });
});

describe('a restored child\'s parent pointer', () => {
  let home: string;
  let fleet: string;
  let env: Record<string, string>;
  const uuid = (i: number) => `7d1c2a3e-0000-4000-8000-1${String(i).padStart(11, '0')}`;

  beforeAll(async () => {
    home = await tempDir();
    fleet = path.join(home, 'fleet');
    await fs.mkdir(path.join(fleet, 'images/sub'), { recursive: true });
    await fs.mkdir(path.join(fleet, 'bases'), { recursive: true });
    await fs.writeFile(path.join(home, 'base.raw'), semiCompressible(4 * MiB, 7));
    for (const base of ['images/base-dotdot.qcow2', 'bases/base-linked.qcow2', 'images/base-abs.qcow2', 'bases/base-rel.qcow2']) {
      await qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', path.join(home, 'base.raw'), path.join(fleet, base));
    }
    await fs.symlink('../bases', path.join(fleet, 'images/link'));
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'lab', '--type', 'libvirt', '--path', fleet)).code).toBe(0);
  });

  const clone = async (name: string, i: number, pointer: string) => {
    const child = path.join(fleet, `images/${name}.qcow2`);
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', pointer, '-F', 'qcow2', child);
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${i} 1M 64k`, child]);
    await fs.writeFile(path.join(fleet, `${name}.xml`), libvirtDomainXml(name, uuid(i), [{ file: child, type: 'qcow2' }]));
    const backup = await cli(env, 'backup', '--vm', name, '--json');
    expect(backup.code, backup.stderr).toBe(0);
    return child;
  };

  /** What qemu reads through the child (its whole chain), as raw. */
  const contentOf = async (child: string) => {
    const out = path.join(home, `content-${path.basename(child)}-${Date.now()}.raw`);
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', child, out);
    return sha256File(out);
  };

  it('a pointer through `..` of a folder restored nowhere: the restored child still opens on the restored parent', async () => {
    const child = await clone('dotdot', 1, 'sub/../base-dotdot.qcow2');
    const expected = await contentOf(child);
    const target = path.join(home, 'r-dotdot');
    const restored = await cli(env, 'restore', 'dotdot', '--target', target, '--json');
    expect(restored.code, restored.stderr).toBe(0);
    const copy = path.join(target, path.relative(fleet, child));
    expect(await contentOf(copy)).toBe(expected);
    const info = JSON.parse(await qemuImg('info', '--output=json', copy)) as { 'full-backing-filename': string };
    expect(await fs.realpath(info['full-backing-filename'])).toBe(path.join(target, 'images/base-dotdot.qcow2'));
  });

  it('a pointer through a symlink: in place the child comes back byte for byte; in a folder it opens on the restored parent', async () => {
    const child = await clone('linked', 2, 'link/base-linked.qcow2');
    const before = await sha256File(child);
    const expected = await contentOf(child);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x77 1M 64k', child]);
    const inPlace = await cli(env, 'restore', 'linked', '--in-place', '--policy', 'overwrite', '--confirm-drift', '--json');
    expect(inPlace.code, inPlace.stderr).toBe(0);
    expect(await sha256File(child)).toBe(before);
    const target = path.join(home, 'r-linked');
    const restored = await cli(env, 'restore', 'linked', '--target', target, '--json');
    expect(restored.code, restored.stderr).toBe(0);
    const copy = path.join(target, path.relative(fleet, child));
    expect(await contentOf(copy)).toBe(expected);
    const info = JSON.parse(await qemuImg('info', '--output=json', copy)) as { 'full-backing-filename': string };
    expect(await fs.realpath(info['full-backing-filename'])).toBe(path.join(target, 'bases/base-linked.qcow2'));
  });

  it('absolute and relative pointers: in place byte for byte; in a folder, on the restored parent, never the live one', async () => {
    for (const [name, i, pointer] of [['abs', 3, path.join(fleet, 'images/base-abs.qcow2')], ['rel', 4, '../bases/base-rel.qcow2']] as const) {
      const child = await clone(name, i, pointer);
      const before = await sha256File(child);
      await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x78 1M 64k', child]);
      const inPlace = await cli(env, 'restore', name, '--in-place', '--policy', 'overwrite', '--confirm-drift', '--json');
      expect(inPlace.code, inPlace.stderr).toBe(0);
      expect(await sha256File(child), name).toBe(before);
      const target = path.join(home, `r-${name}`);
      expect((await cli(env, 'restore', name, '--target', target, '--json')).code).toBe(0);
      const copy = path.join(target, path.relative(fleet, child));
      const info = JSON.parse(await qemuImg('info', '--output=json', copy)) as { 'full-backing-filename': string };
      expect((await fs.realpath(info['full-backing-filename'])).startsWith(target + '/'), `${name}: ${info['full-backing-filename']}`).toBe(true);
    }
  });
});


describe.skipIf(!guestFiles)('restore --as and in place through a libvirt connection (real libvirtd)', () => {
  const tag = `adv3${process.pid}`;
  const names = { sys: `${tag}-sys`, moved: `${tag}-moved` };
  const created: string[] = [];
  let home: string;
  let img: string;
  let env: Record<string, string>;
  const xmlOf = (name: string, uuid: string, disk: string, extra = '') => `<domain type='qemu'><name>${name}</name><uuid>${uuid}</uuid><memory unit='MiB'>128</memory><vcpu>1</vcpu>
  ${extra}<os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disk}'/><target dev='vda' bus='virtio'/></disk>
    <interface type='network'><mac address='52:54:00:3a:${String(process.pid % 100).padStart(2, '0')}:01'/><source network='default'/><model type='virtio'/></interface>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices></domain>\n`;
  const define = async (xml: string) => {
    const file = path.join(home, `define-${Date.now()}.xml`);
    await fs.writeFile(file, xml);
    await virsh('define', file);
  };
  const domains = async () => (await virsh('list', '--all', '--name')).split('\n').filter((n) => n.startsWith(tag));

  beforeAll(async () => {
    home = await tempDir();
    await fs.chmod(home, 0o755);
    img = path.join(home, 'img');
    await fs.mkdir(img);
    for (const name of Object.values(names)) {
      await qemuImg('create', '-q', '-f', 'qcow2', path.join(img, `${name}.qcow2`), '16M');
      await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', path.join(img, `${name}.qcow2`)]);
    }
    const sysUuid = '6a0f3c52-0000-4000-8000-0000000a0001';
    created.push(names.sys, names.moved);
    await define(xmlOf(names.sys, sysUuid, path.join(img, `${names.sys}.qcow2`),
      `<sysinfo type='smbios'><system><entry name='manufacturer'>adv</entry><entry name='uuid'>${sysUuid}</entry></system></sysinfo>`));
    await define(xmlOf(names.moved, '6a0f3c52-0000-4000-8000-0000000a0002', path.join(img, `${names.moved}.qcow2`)));
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    const added = await cli(env, 'source', 'add', 'host', '--type', 'libvirt', '--uri', URI, '--storage', img);
    expect(added.code, added.stderr).toBe(0);
    const backup = await cli(env, 'backup', '--vm', names.sys, '--vm', names.moved, '--json');
    expect(backup.code, backup.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    for (const name of await domains().catch(() => created)) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name, '--checkpoints-metadata').catch(() => undefined);
    }
    await fs.rm(home, { recursive: true, force: true });
  });

  it('refuses bad names and --as with --in-place, defining nothing and leaving the original as it was', async () => {
    const original = await virsh('dumpxml', '--inactive', names.sys);
    for (const [args, message] of [
      [['--as', '../x', '--target', path.join(home, 'bad1')], /not a usable VM name/],
      [['--as', 'a b', '--target', path.join(home, 'bad2')], /not a usable VM name/],
      [['--as', `${tag}-x`, '--in-place'], /goes into a folder/],
      [['--as', names.moved, '--target', path.join(home, 'bad3')], /already exists/],
    ] as const) {
      const result = await cli(env, 'restore', names.sys, ...args, '--json');
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(message);
    }
    expect(await domains()).toEqual([names.sys, names.moved].sort());
    expect(await virsh('dumpxml', '--inactive', names.sys)).toBe(original);
  });

  it('restores a domain with an SMBIOS uuid and an interface as a new VM', async () => {
    const copy = `${tag}-sys2`;
    created.push(copy);
    const original = await virsh('dumpxml', '--inactive', names.sys);
    const target = path.join(home, 'as-new');
    const done = await cli(env, 'restore', names.sys, '--target', target, '--as', copy, '--json');
    expect(done.code, done.stderr).toBe(0);
    const xml = await virsh('dumpxml', '--inactive', copy);
    const uuid = (await virsh('domuuid', copy)).trim();
    expect(uuid).not.toBe((await virsh('domuuid', names.sys)).trim());
    expect(xml).toContain(`<entry name='uuid'>${uuid}</entry>`);
    expect(xml).not.toContain(original.match(/<mac address='([^']+)'/)![1]);
    expect(await virsh('dumpxml', '--inactive', names.sys)).toBe(original);
  });

  it('in place, a domain of that name with another UUID now is another VM: refused before anything is written', async () => {
    const disk = path.join(img, `${names.moved}.qcow2`);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 0 1M', disk]);
    const changed = await sha256File(disk);
    await virsh('undefine', names.moved, '--checkpoints-metadata');
    const other = '6a0f3c52-0000-4000-8000-0000000a00ff';
    await define(xmlOf(names.moved, other, disk));
    const result = await cli(env, 'restore', names.moved, '--in-place', '--policy', 'overwrite', '--confirm-drift', '--json');
    expect(result.code, result.stdout).toBe(2);
    expect(result.stderr).toMatch(/is another VM now \(UUID 6a0f3c52-0000-4000-8000-0000000a00ff.*nothing was written/);
    expect(await sha256File(disk)).toBe(changed);
    expect((await virsh('domuuid', names.moved)).trim()).toBe(other);
  });
});

describe.skipIf(!guestFiles)('virsh define failing after the files are written (real libvirtd, a virsh that fails to define)', () => {
  const tag = `adv3${process.pid}`;
  const name = `${tag}-deffail`;
  let home: string;
  let img: string;
  let env: Record<string, string>;
  let failing: Record<string, string>;

  beforeAll(async () => {
    home = await tempDir();
    await fs.chmod(home, 0o755);
    img = path.join(home, 'img');
    await fs.mkdir(img);
    const disk = path.join(img, `${name}.qcow2`);
    await qemuImg('create', '-q', '-f', 'qcow2', disk, '16M');
    const xml = path.join(home, 'd.xml');
    await fs.writeFile(xml, `<domain type='qemu'><name>${name}</name><uuid>6a0f3c52-0000-4000-8000-0000000b0001</uuid><memory unit='MiB'>128</memory><os><type arch='x86_64' machine='pc'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>\n`);
    await virsh('define', xml);
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'host', '--type', 'libvirt', '--uri', URI, '--storage', img)).code).toBe(0);
    expect((await cli(env, 'backup', '--vm', name, '--json')).code).toBe(0);
    const bin = path.join(home, 'bin');
    await fs.mkdir(bin);
    await fs.writeFile(path.join(bin, 'virsh'), '#!/bin/sh\nfor a in "$@"; do [ "$a" = define ] && { echo "error: refused by the test" >&2; exit 1; }; done\nexec /usr/bin/virsh "$@"\n', { mode: 0o755 });
    failing = { ...env, PATH: `${bin}:${process.env.PATH}` };
  }, 60_000);

  afterAll(async () => {
    for (const n of [name, `${name}2`]) await virsh('undefine', n, '--checkpoints-metadata').catch(() => undefined);
    await fs.rm(home, { recursive: true, force: true });
  });

  it('in place: says the disks were restored and the definition was not', async () => {
    const disk = path.join(img, `${name}.qcow2`);
    const backedUp = await sha256File(disk);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x44 0 1M', disk]);
    const result = await cli(failing, 'restore', name, '--in-place', '--policy', 'overwrite', '--confirm-drift', '--json');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/disks were restored in place, but libvirt did not take its definition \(virsh define failed: .*refused by the test\)/);
    expect(await sha256File(disk)).toBe(backedUp);
  });

  it('--as: says where the files are and how to define it; nothing is defined', async () => {
    const target = path.join(home, 'as');
    const result = await cli(failing, 'restore', name, '--target', target, '--as', `${name}2`, '--json');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`restored into ${target} as ${name}2, but libvirt did not define it .*virsh -c qemu:///system define ${target}/`));
    expect((await virsh('list', '--all', '--name')).split('\n')).not.toContain(`${name}2`);
  });
});
