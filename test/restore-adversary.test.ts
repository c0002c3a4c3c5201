/**
 * The restore path attacked as an adversary would: a second VM of the same name, a moved config, a changed
 * grandparent under a restored child, targets that are symlinks (into a source, to an empty folder), long file
 * names, a FIFO where the restore marker should be, tampered manifests of the wrong shape, a disk filling up
 * mid-restore, a disk replaced by a symlink or a hard link to another VM's disk, and the plan's fingerprint.
 * Each case says what must hold; the real CLI runs against real qcow2 images and a real PostgreSQL.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildFleet, writeData } from '../lib/demo/fleet';
import { planRestore } from '../lib/engine/restore/plan';
import type { BackupImageManifest } from '../lib/engine/repository/manifests';
import { scanSource } from '../lib/engine/sources/inventory';
import { cli, createTestDatabase, libvirtDomainXml, projectRoot, qemuImg, run, sha256File, snapshotTree, storedImage, tempDir } from './helpers';

type Json = {
  status: string; message: string; cannotExecute?: string; config: string;
  drift: { disk: string; kind: string; sharedWith: string[] }[];
  disks: { path: string; action: string; verified: boolean; written: string[]; sharedWith: string[] }[];
};

const uuidOf = (name: string) => `00000000-0000-4000-8000-${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;
const domain = (name: string, disks: { file: string; type: string }[], uuid = uuidOf(name)) => libvirtDomainXml(name, uuid, disks);

const sha = sha256File;
const exists = (file: string) => fs.lstat(file).then(() => true, () => false);

const snapshot = snapshotTree;

const LONG_NAME = `${'d'.repeat(236)}.img`; // a legal name (240 bytes): its temp name must still fit in 255

describe('restore under attack', () => {
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
    const result = await cli(env, 'backup', '--source', 'kvm', '--json');
    expect(result.code, result.stderr).toBe(0);
  };
  const lastBackup = async (vm: string) => {
    const list = JSON.parse((await cli(env, 'backups', '--vm', vm, '--json')).stdout) as { backups: { backupId: string }[] };
    return list.backups[0].backupId;
  };
  const guestBytes = async (file: string) => {
    const raw = path.join(home, `guest-${createHash('sha256').update(file).digest('hex').slice(0, 8)}.raw`);
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', file, raw);
    const digest = await sha(raw);
    await fs.rm(raw);
    return digest;
  };
  const oneLine = (stderr: string) => {
    const lines = stderr.trim().split('\n');
    expect(lines, stderr).toHaveLength(1);
    expect(stderr).not.toMatch(/TypeError|Cannot read properties|is not iterable|is not a function|must be of type|argument|^\s+at /);
    return lines[0];
  };

  beforeAll(async () => {
    home = await tempDir();
    kvm = path.join(home, 'kvm');
    images = path.join(kvm, 'images');
    out = path.join(home, 'out');
    await fs.mkdir(images, { recursive: true });
    await fs.mkdir(out);
    await writeData(path.join(images, 'a.img'), 1024 * 1024, 1);
    await writeData(path.join(images, 'b.img'), 1024 * 1024, 2);
    await writeData(path.join(images, LONG_NAME), 1024 * 1024, 3);
    await writeData(path.join(images, 'big.img'), 24 * 1024 * 1024, 4);
    // A three-level chain: base <- mid (shared by c1 and c2) <- c1, c2.
    await writeData(path.join(home, 'base.raw'), 2 * 1024 * 1024, 5);
    await qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', path.join(home, 'base.raw'), path.join(images, 'base.qcow2'));
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(images, 'mid.qcow2'));
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 64k 64k', path.join(images, 'mid.qcow2')]);
    for (const [name, byte] of [['c1', '0x44'], ['c2', '0x55']]) {
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', path.join(images, `${name}.qcow2`));
      await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${byte} 128k 64k`, path.join(images, `${name}.qcow2`)]);
    }
    await fs.writeFile(path.join(kvm, 'vm1.xml'), domain('vm1', [{ file: 'images/a.img', type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'vm2.xml'), domain('vm2', [{ file: 'images/b.img', type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'long.xml'), domain('long', [{ file: `images/${LONG_NAME}`, type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'big.xml'), domain('big', [{ file: 'images/big.img', type: 'raw' }]));
    await fs.writeFile(path.join(kvm, 'c1.xml'), domain('c1', [{ file: 'images/c1.qcow2', type: 'qcow2' }]));
    await fs.writeFile(path.join(kvm, 'c2.xml'), domain('c2', [{ file: 'images/c2.qcow2', type: 'qcow2' }]));
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', kvm)).code).toBe(0);
    await backup();
  });

  it('a second VM of the same name (a copied config on the same disk) is another VM: its disk is not written in place', async () => {
    const copy = path.join(kvm, 'copy', 'vm1.xml');
    await fs.mkdir(path.dirname(copy));
    await fs.writeFile(copy, domain('vm1', [{ file: '../images/a.img', type: 'raw' }], uuidOf('vm1-copy')));
    await writeData(path.join(images, 'a.img'), 1024 * 1024, 11); // written since the backup (by either VM)
    try {
      const before = await sha(path.join(images, 'a.img'));
      const plan = await restore('restore', 'vm1', '--in-place');
      expect(plan.code, plan.stderr).toBe(3);
      expect(plan.json!.disks[0].sharedWith).toEqual([expect.stringMatching(/copy\/vm1\.xml/)]);
      const confirmed = await restore('restore', 'vm1', '--in-place', '--confirm-drift');
      expect(confirmed.code, confirmed.stderr).toBe(0);
      expect(confirmed.json!.disks[0].action).toBe('reattached');
      expect(await sha(path.join(images, 'a.img'))).toBe(before);
    } finally {
      await fs.rm(path.dirname(copy), { recursive: true });
    }
  });

  it('a config moved since the backup: an in-place restore refuses to define the VM a second time', async () => {
    await backup();
    const moved = path.join(kvm, 'sub', 'vm1.xml');
    await fs.mkdir(path.dirname(moved));
    await fs.writeFile(moved, domain('vm1', [{ file: '../images/a.img', type: 'raw' }]));
    await fs.rm(path.join(kvm, 'vm1.xml'));
    try {
      const before = await snapshot(kvm);
      const refused = await cli(env, 'restore', 'vm1', '--in-place', '--confirm-drift');
      expect(refused.code, refused.stderr).toBe(2);
      expect(oneLine(refused.stderr)).toMatch(/sub\/vm1\.xml/);
      expect(await snapshot(kvm)).toEqual(before);
    } finally {
      await fs.rm(path.dirname(moved), { recursive: true });
      await fs.writeFile(path.join(kvm, 'vm1.xml'), domain('vm1', [{ file: 'images/a.img', type: 'raw' }]));
    }
  });

  it('a target that is a symlink into a source is refused like a target inside it', async () => {
    const inside = path.join(kvm, 'restores');
    await fs.mkdir(inside);
    const link = path.join(home, 'link-into-source');
    await fs.symlink(inside, link);
    try {
      const before = await snapshot(kvm);
      for (const target of [link, path.join(link, 'vm2')]) {
        const refused = await cli(env, 'restore', 'vm2', '--target', target);
        expect(refused.code, `${target}: ${refused.stderr}`).toBe(2);
        expect(oneLine(refused.stderr)).toMatch(/inside the source/);
      }
      expect(await snapshot(kvm)).toEqual(before);
    } finally {
      await fs.rm(link);
      await fs.rm(inside, { recursive: true });
    }
  });

  it('a target inside the repository is refused', async () => {
    const refused = await cli(env, 'restore', 'vm2', '--target', path.join(home, 'repository', 'images', 'vm2'));
    expect(refused.code, refused.stderr).toBe(2);
    expect(oneLine(refused.stderr)).toMatch(/inside the repository/);
    expect(await exists(path.join(home, 'repository', 'images', 'vm2'))).toBe(false);
  });

  it('a target that is a symlink to an empty folder gives a self-contained VM (relative pointers, not the link)', async () => {
    await backup();
    const real = path.join(home, 'real-empty');
    await fs.mkdir(real);
    const link = path.join(home, 'link-to-empty');
    await fs.symlink(real, link);
    const done = await restore('restore', 'c1', '--target', link, '--policy', 'overwrite', '--confirm-drift');
    expect(done.code, done.stderr).toBe(0);
    const xml = await fs.readFile(path.join(real, 'c1.xml'), 'utf8');
    expect(xml).toContain(`file='images/c1.qcow2'`);
    const info = JSON.parse(await qemuImg('info', '--output=json', '--backing-chain', path.join(real, 'images', 'c1.qcow2'))) as { 'backing-filename'?: string }[];
    expect(info.map((i) => i['backing-filename'])).toEqual(['mid.qcow2', 'base.qcow2', undefined]);
    await qemuImg('check', path.join(real, 'images', 'c1.qcow2'));
    expect(await guestBytes(path.join(real, 'images', 'c1.qcow2'))).toBe(await guestBytes(path.join(images, 'c1.qcow2')));
  });

  it('refuses to reattach a restored child whose grandparent changed since the backup; copy gives the backed-up data', async () => {
    await backup();
    const original = await guestBytes(path.join(images, 'c1.qcow2'));
    const base = path.join(images, 'base.qcow2');
    const baseBytes = await fs.readFile(base);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x7a 0 64k', base]);
    try {
      const target = path.join(out, 'grandparent');
      const refused = await cli(env, 'restore', 'c1', '--target', target, '--confirm-drift');
      expect(refused.code, refused.stderr).toBe(2);
      expect(oneLine(refused.stderr)).toMatch(/base\.qcow2 was modified after this backup.*--choice copy/);
      expect(await exists(path.join(target, 'images', 'c1.qcow2'))).toBe(false);
      // Policy overwrite into a folder restores the shared chain with the VM: the message must say that, not "attach".
      const overwrite = await restore('restore-plan', 'c1', '--target', target, '--policy', 'overwrite');
      expect(overwrite.json!.disks.map((d) => d.action)).toEqual(['restored', 'restored', 'restored']);
      expect(overwrite.json!.message).not.toMatch(/no-overwrite|attach the current/);
      expect(overwrite.json!.message).toMatch(/mid\.qcow2 and base\.qcow2 as backed up.*into /);

      const copied = await restore('restore', 'c1', '--target', target, '--confirm-drift', '--choice', 'copy');
      expect(copied.code, copied.stderr).toBe(0);
      await qemuImg('check', path.join(target, 'images', 'c1.qcow2'));
      expect(await guestBytes(path.join(target, 'images', 'c1.qcow2'))).toBe(original);
    } finally {
      await fs.writeFile(base, baseBytes);
    }
  });

  it('restores a disk whose file name is long (240 bytes), to a folder and in place', async () => {
    await backup();
    const want = await sha(path.join(images, LONG_NAME));
    const folder = await restore('restore', 'long', '--target', path.join(out, 'long'));
    expect(folder.code, folder.stderr).toBe(0);
    expect(await sha(path.join(out, 'long', 'images', LONG_NAME))).toBe(want);
    await writeData(path.join(images, LONG_NAME), 1024 * 1024, 12);
    const inPlace = await restore('restore', 'long', '--in-place');
    expect(inPlace.code, inPlace.stderr).toBe(0);
    expect(await sha(path.join(images, LONG_NAME))).toBe(want);
    expect((await fs.readdir(images)).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('a FIFO where the restore marker should be: refused at once, never a hang', async () => {
    const target = path.join(out, 'fifo');
    await fs.mkdir(target);
    await run('mkfifo', [path.join(target, '.vmdedup-restore.json')]);
    const started = Date.now();
    const result = await run(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), 'restore', 'vm2', '--target', target], {
      env: { ...process.env, ...env }, timeout: 30_000, killSignal: 'SIGKILL',
    }).then(() => ({ code: 0, stderr: '' }), (err: { code?: number; signal?: string; stderr?: string }) => ({ code: err.code ?? err.signal, stderr: err.stderr ?? '' }));
    expect(result.code, `${result.stderr} after ${Date.now() - started} ms`).toBe(2);
    expect(oneLine(result.stderr)).toMatch(/not empty|marker/);
  });

  it('a tampered or damaged backup image or stored disk gives one clean line and writes nothing', async () => {
    await backup();
    const id = await lastBackup('vm2');
    const imageAsStored = await storedImage(path.join(home, 'repository'), id);
    const image = imageAsStored.json as BackupImageManifest;
    const storedFile = path.join(home, 'repository', 'disks', `${image.disks[0].digest}.json`);
    const stored = await fs.readFile(storedFile, 'utf8');
    type Tamper = [string, (m: Record<string, any>) => void];
    const imageCases: Tamper[] = [
      ['relativePath escapes', (m) => { m.disks[0].relativePath = '../../escape.img'; }],
      ['relativePath absolute', (m) => { m.disks[0].relativePath = path.join(home, 'absolute.img'); }],
      ['relativePath with NUL', (m) => { m.disks[0].relativePath = 'images/b\u0000.img'; }],
      ['a file name escapes', (m) => { m.disks[0].files[0].name = '../../../escape.img'; }],
      ['files not a list', (m) => { m.disks[0].files = 'b.img'; }],
      ['relativeConfigPath with NUL', (m) => { m.vm.relativeConfigPath = 'vm2\u0000.xml'; }],
      ['disks not a list', (m) => { m.disks = { 0: m.disks[0] }; }],
      ['an owner out of range', (m) => { m.disks[0].files[0].uid = -5; }],
      ['an id that is not its own', (m) => { m.id = '../vm1'; }],
      ['a creation time that is none', (m) => { m.createdAt = 'garbage'; }],
      ['more files than its stored disk', (m) => { m.disks[0].files.push({ name: 'b-flat.img' }); }],
    ];
    const storedCases: Tamper[] = [
      ['blocks not a list', (m) => { m.files[0].blocks = 'x'; }],
      ['a block id that is not one', (m) => { m.files[0].blocks[0] = '../../config'; }],
      ['block size absurd', (m) => { m.blockSize = -1; }],
      ['blocks that do not match its digest', (m) => { m.files[0].blocks[0] = 'e'.repeat(64); }],
      ['the manifest of another stored disk', (m) => { m.digest = 'd'.repeat(64); }],
    ];
    const target = path.join(out, 'tampered');
    const before = await snapshot(kvm);
    const homeEntries = async () => (await fs.readdir(home, { recursive: true })).filter((f) => !/^(repository|catalog)(\/|$)/.test(f)).sort();
    const entriesBefore = await homeEntries();
    try {
      const storedDisk = { json: JSON.parse(stored), save: (value: unknown) => fs.writeFile(storedFile, JSON.stringify(value)), restore: () => fs.writeFile(storedFile, stored) };
      for (const [what, tamper, asStored] of [
        ...imageCases.map(([w, t]) => [w, t, imageAsStored] as const),
        ...storedCases.map(([w, t]) => [`stored disk: ${w}`, t, storedDisk] as const),
      ]) {
        const manifest = structuredClone(asStored.json);
        tamper(manifest);
        await asStored.save(manifest);
        const result = await cli(env, 'restore', 'vm2', '--target', target);
        expect(result.code, `${what}: ${result.stderr}`).toBe(1);
        expect(oneLine(result.stderr), what).toMatch(/damaged|corrupt|unusable|invalid/);
        expect(await exists(target), `${what}: wrote into the target`).toBe(false);
        await asStored.restore();
      }
      // nothing in the source changed, and no file appeared anywhere (an escape would have made one)
      expect(await snapshot(kvm)).toEqual(before);
      expect(await homeEntries()).toEqual(entriesBefore);
    } finally {
      await imageAsStored.restore();
      await fs.writeFile(storedFile, stored);
    }
  });

  it.skipIf(process.getuid?.() !== 0)('a disk that fills up mid-restore: one line naming the VM and the file, nothing under a final name, the rerun completes', async () => {
    await backup();
    const mount = path.join(home, 'small');
    await fs.mkdir(mount);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', mount]);
    try {
      const target = path.join(mount, 'big');
      const child = cli(env, 'restore', 'big', '--target', target, '--json');
      // Once the restore has begun writing, something else takes the space it counted on.
      while (!(await exists(path.join(target, '.vmdedup-restore.json')))) await new Promise((resolve) => setTimeout(resolve, 1));
      await run('fallocate', ['-l', '20M', path.join(mount, 'filler')]);
      const result = await child;
      expect(result.code, result.stderr).toBe(1);
      expect(oneLine(result.stderr)).toMatch(/big.*no space left on device.*images\/big\.img|images\/big\.img.*no space left on device/);
      const left = (await fs.readdir(target, { recursive: true })).filter((f) => !f.startsWith('.vmdedup-restore') && f !== 'images');
      expect(left).toEqual([]);
      await fs.rm(path.join(mount, 'filler'));
      const again = await restore('restore', 'big', '--target', target);
      expect(again.code, again.stderr).toBe(0);
      expect(await sha(path.join(target, 'images', 'big.img'))).toBe(await sha(path.join(images, 'big.img')));
    } finally {
      await run('umount', [mount]);
    }
  });

  it('holds: in place, a disk replaced by a symlink or a hard link to another VM\'s disk leaves that disk as it is', async () => {
    await backup();
    const own = path.join(images, 'a.img');
    const other = path.join(images, 'b.img');
    const saved = await fs.readFile(own);
    const otherDigest = await sha(other);
    try {
      for (const replace of [() => fs.symlink('b.img', own), () => fs.link(other, own)]) {
        await fs.rm(own);
        await replace();
        const done = await restore('restore', 'vm1', '--in-place', '--confirm-drift');
        expect(done.code, done.stderr).toBe(0);
        expect(await sha(other)).toBe(otherDigest);
        expect((await fs.readFile(own)).equals(saved)).toBe(true);
      }
    } finally {
      await fs.rm(own, { force: true });
      await fs.writeFile(own, saved);
    }
  });

  it('in place, the restored config keeps the permission bits and owner of the file it replaces', async () => {
    const config = path.join(kvm, 'vm2.xml');
    const asRoot = process.getuid?.() === 0;
    await fs.chmod(config, 0o644);
    if (asRoot) await fs.chown(config, 1234, 1234);
    const done = await restore('restore', 'vm2', '--in-place');
    expect(done.code, done.stderr).toBe(0);
    const stat = await fs.stat(config);
    expect(stat.mode & 0o777).toBe(0o644);
    if (asRoot) expect([stat.uid, stat.gid]).toEqual([1234, 1234]);
  });

  // With a registered source that cannot be read now (an unmounted datastore), the VMs there are not counted, so a
  // private disk written in place may be one that such a VM uses: the plan asks for confirmation (it only warned).
  it('in place with a source that cannot be read: asks for confirmation before writing', async () => {
    const offline = path.join(home, 'offline');
    await fs.mkdir(offline);
    expect((await cli(env, 'source', 'add', 'offline', '--type', 'libvirt', '--path', offline)).code).toBe(0);
    await fs.rm(offline, { recursive: true });
    try {
      const before = await sha(path.join(images, 'b.img'));
      await writeData(path.join(images, 'b.img'), 1024 * 1024, 13);
      const plan = await restore('restore', 'vm2', '--in-place');
      expect(plan.json!.message).toMatch(/source 'offline' could not be read/);
      expect(plan.code).toBe(3);
      expect(await sha(path.join(images, 'b.img'))).not.toBe(before);
    } finally {
      const sql = new pg.Client({ connectionString: env.DATABASE_URL });
      await sql.connect();
      await sql.query(`DELETE FROM "Source" WHERE "name" = 'offline'`);
      await sql.end();
    }
  });

  // Left failing (for the lead): `--choice copy` in place puts a second file with the shared VMDK's ddb.uuid into the
  // datastore, and from then on every backup of that source exits 2 ("identifier … is given to 2 disk files … give
  // the copy a new ddb.uuid"). VMware's own clone gives a copy a new ddb.uuid; but ddb.uuid can be what the guest
  // mounts by (disk.EnableUUID), so changing it is a decision, not an obvious fix. libvirt <serial>/<wwn> alike.
  it.fails('VMware: a copy restored in place does not make the next backup of its source fail (duplicate ddb.uuid)', async () => {
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 0, configDiskMiB: 1, vmwareVms: 2, vmwareBaseMiB: 2 });
    expect((await cli(env, 'source', 'add', 'esx', '--type', 'vmware', '--path', fleet.vmwareDir!)).code).toBe(0);
    expect((await cli(env, 'backup', '--source', 'esx')).code).toBe(0);
    await writeData(path.join(fleet.vmwareDir!, 'shared', 'quorum-flat.vmdk'), 64 * 1024, 14); // app2 wrote the shared disk
    const copied = await restore('restore', 'app1', '--in-place', '--confirm-drift', '--choice', 'copy');
    expect(copied.code, copied.stderr).toBe(0);
    expect(copied.json!.disks.map((d) => d.action)).toContain('copied');
    const next = await cli(env, 'backup', '--source', 'esx');
    expect(next.stderr).toBe('');
    expect(next.code).toBe(0);
  });

  it('the fingerprint changes with what would be written: the backed-up content and config', async () => {
    await backup();
    const id = await lastBackup('vm2');
    const image = (await storedImage(path.join(home, 'repository'), id)).json as BackupImageManifest;
    const live = { source: await scanSource({ name: 'kvm', type: 'libvirt', path: kvm }), others: [], unreadable: [] };
    const repo = { getStoredDisk: () => Promise.reject(new Error('not needed')) };
    const plan = (img: BackupImageManifest) => planRestore({ image: img, live, target: { kind: 'folder', dir: path.join(out, 'fp') }, repo });
    const first = await plan(image);
    expect((await plan(structuredClone(image))).fingerprint).toBe(first.fingerprint);
    const otherContent = structuredClone(image);
    otherContent.disks[0].digest = 'f'.repeat(64);
    expect((await plan(otherContent)).fingerprint).not.toBe(first.fingerprint);
    const otherConfig = structuredClone(image);
    otherConfig.vm.configBase64 = Buffer.from('<domain/>').toString('base64');
    expect((await plan(otherConfig)).fingerprint).not.toBe(first.fingerprint);
  });
});
