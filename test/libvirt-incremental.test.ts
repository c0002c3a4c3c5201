/**
 * Incremental reads of a running domain's qcow2 disk, against a real libvirtd and a real QEMU guest (TCG) that writes
 * sequence-numbered 64 KiB blocks (scripts/libvirt-host.sh; VMDEDUP_TEST_LIBVIRT names its folder). The disk holds
 * 128 MiB of its own data besides what the guest writes; each backup after the first reads only what changed since
 * the checkpoint the previous one took, and every backup restores to exactly the guest's disk at its point in time; a
 * checkpoint gone or broken (QEMU killed) means one full read, then incremental again.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, qemuImg, semiCompressible, tempDir } from './helpers';
import { URI, domainXml, guestFiles, sequenceCheck, startGuest, virsh } from './libvirt-guest';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SLOT = 65536;

type BackupJson = { backups: { vm: string; consistency?: string; disks: { path: string; bytesRead: number }[] }[]; warnings?: string[] };

describe.skipIf(!guestFiles)('incremental reads of a running domain (real libvirtd, real QEMU guest)', () => {
  const name = `vmdi${process.pid}`;
  let home: string;
  let img: string;
  let disk: string;
  let env: Record<string, string>;
  let chainBefore: string;
  let restores = 0;

  const backup = async (...flags: string[]) => {
    const result = await cli(env, 'backup', '--vm', name, '--json', ...flags);
    expect(result.code, result.stderr).toBe(0);
    const json = JSON.parse(result.stdout) as BackupJson;
    return { bytesRead: json.backups[0].disks.find((d) => d.path === disk)!.bytesRead, consistency: json.backups[0].consistency, warnings: (json.warnings ?? []).join('\n') };
  };
  /** What `qemu-img check` says of a file: its exit code (3: leaked clusters only) and the clusters it names. */
  const checkOf = (file: string) => run('qemu-img', ['check', '-U', file]).then(
    () => ({ code: 0, leaked: [] as string[] }),
    (err: { code: number; stdout: string }) => ({ code: err.code, leaked: err.stdout.split('\n').filter((line) => line.startsWith('Leaked cluster')) }),
  );
  /** The newest backup restored, checked by qemu-img, as the guest's raw disk. Once QEMU was killed the disk itself
   *  may hold leaked clusters (harmless, exit code 3): the restored file then holds exactly those. */
  const restoredRaw = async (): Promise<string> => {
    const target = path.join(home, `restored-${++restores}`);
    const restored = await cli(env, 'restore', name, '--target', target, '--json');
    expect(restored.code, restored.stderr).toBe(0);
    const file = path.join(target, path.relative('/', img), `${name}.qcow2`);
    const ours = await checkOf(file);
    if (ours.code !== 0) {
      expect(ours.code).toBe(3);
      expect(ours).toEqual(await checkOf(disk));
    }
    const raw = path.join(home, `restored-${restores}.raw`);
    await qemuImg('convert', '-O', 'raw', file, raw);
    await fs.rm(target, { recursive: true, force: true });
    return raw;
  };
  /** The guest's disk now (the domain paused: QEMU flushed it), as a raw image. */
  const liveRaw = async (label: string): Promise<string> => {
    const raw = path.join(home, `live-${label}.raw`);
    await qemuImg('convert', '-U', '-O', 'raw', disk, raw);
    return raw;
  };
  const same = async (a: string, b: string) => run('cmp', ['-s', a, b]).then(() => true, () => false);
  /** Bytes of the guest's writer area (its 4096 slots) that differ between two raw images. */
  const changedBytes = async (a: string, b: string): Promise<number> => {
    const [x, y] = await Promise.all([fs.open(a), fs.open(b)]);
    try {
      let changed = 0;
      const bx = Buffer.alloc(SLOT);
      const by = Buffer.alloc(SLOT);
      for (let slot = 0; slot < 4096; slot++) {
        await x.read(bx, 0, SLOT, slot * SLOT);
        await y.read(by, 0, SLOT, slot * SLOT);
        if (!bx.equals(by)) changed += SLOT;
      }
      return changed;
    } finally {
      await x.close();
      await y.close();
    }
  };
  const ourCheckpoints = async () => (await virsh('checkpoint-list', '--domain', name, '--name')).split('\n').filter(Boolean);
  /** The checkpoints' bitmaps in the disk file (the domain shut off); each marker bitmap (`<checkpoint>-vda`, which
   *  a checkpoint taken shut off adds) must belong to one of them. */
  const bitmaps = async () => {
    const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', disk]);
    const names = ((JSON.parse(stdout) as { 'format-specific': { data: { bitmaps?: { name: string }[] } } })['format-specific'].data.bitmaps ?? []).map((b) => b.name).sort();
    const checkpoints = names.filter((n) => !n.endsWith('-vda'));
    expect(names.filter((n) => n.endsWith('-vda')).every((marker) => checkpoints.includes(marker.slice(0, -'-vda'.length)))).toBe(true);
    return checkpoints;
  };
  const shutOff = async () => {
    await virsh('destroy', name); // SIGTERM: QEMU stores the bitmaps in the file
    for (let i = 0; i < 100 && (await virsh('domstate', name)).trim() !== 'shut off'; i++) await new Promise((r) => setTimeout(r, 100));
  };

  beforeAll(async () => {
    home = await tempDir();
    img = path.join(home, 'img');
    await fs.mkdir(img);
    await fs.chmod(home, 0o755); // QEMU runs as libvirt-qemu
    // 128 MiB of the disk's own data beyond the 256 MiB the guest writes.
    const raw = path.join(home, 'seed.raw');
    const handle = await fs.open(raw, 'w');
    await handle.truncate(512 * MiB);
    for (let i = 0; i < 8; i++) await handle.write(semiCompressible(16 * MiB, 40 + i), 0, 16 * MiB, 256 * MiB + i * 16 * MiB);
    await handle.close();
    disk = path.join(img, `${name}.qcow2`);
    await qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, disk);
    await fs.rm(raw);
    const xml = path.join(home, `${name}.xml`);
    await fs.writeFile(xml, domainXml(name, home, [{ dev: 'vda', file: disk, format: 'qcow2' }], true));
    await virsh('define', xml);
    await startGuest(name, path.join(home, `${name}.console`));
    chainBefore = await virsh('domblklist', name);
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    const added = await cli(env, 'source', 'add', 'host', '--type', 'libvirt', '--uri', URI, '--storage', img);
    expect(added.code, added.stderr).toBe(0);
  }, 180_000);

  afterAll(async () => {
    await virsh('destroy', name).catch(() => undefined);
    await virsh('undefine', name, '--checkpoints-metadata').catch(() => undefined);
    await fs.rm(home, { recursive: true, force: true });
  });

  it('reads only what the guest changed since the last backup, and each backup restores to the guest disk at its point in time', async () => {
    const size = (await fs.stat(disk)).size;
    const first = await backup();
    expect(first.bytesRead).toBeGreaterThan(128 * MiB);
    let before = await restoredRaw();
    expect((await sequenceCheck(before)).wrong).toEqual([]);
    for (let round = 0; round < 3; round++) {
      await new Promise((r) => setTimeout(r, 1500 + round * 700)); // the guest writes ~1 MiB
      await virsh('suspend', name);
      try {
        const { bytesRead } = await backup();
        const live = await liveRaw(String(round));
        const restored = await restoredRaw();
        const changed = await changedBytes(before, live);
        console.log(`incremental ${round + 1}: the guest changed ${(changed / MiB).toFixed(2)} MiB of a ${(size / MiB).toFixed(0)} MiB file; the backup read ${(bytesRead / MiB).toFixed(2)} MiB`);
        expect(changed).toBeGreaterThan(0);
        expect(bytesRead).toBeLessThanOrEqual(changed + 4 * MiB);
        // Exactly the guest's disk, not merely consistent.
        expect(await same(restored, live)).toBe(true);
        await fs.rm(before);
        await fs.rm(live);
        before = restored;
      } finally {
        await virsh('resume', name);
      }
      expect(await virsh('domblklist', name)).toBe(chainBefore);
      // The checkpoint this backup took and the one it read from; no more.
      const checkpoints = await ourCheckpoints();
      expect(checkpoints.length).toBeLessThanOrEqual(2);
      expect(checkpoints.every((c) => /^vmdedup-/.test(c))).toBe(true);
    }
    // While the guest writes: point-in-time consistent, read incrementally too.
    const running = await backup();
    expect(running.bytesRead).toBeLessThan(size / 8);
    const raw = await restoredRaw();
    const check = await sequenceCheck(raw);
    expect(check.wrong).toEqual([]);
    expect(check.highest).toBeGreaterThan((await sequenceCheck(before)).highest);
    await fs.rm(raw);
    await fs.rm(before);
    expect((await fs.readdir(img)).filter((f) => f.includes('.vmdedup-'))).toEqual([]);
  }, 300_000);

  it('reads the disk whole when its checkpoint is gone, or when a full read is asked for, then incrementally again', async () => {
    const size = (await fs.stat(disk)).size;
    for (const checkpoint of await ourCheckpoints()) await virsh('checkpoint-delete', '--domain', name, '--checkpointname', checkpoint, '--metadata');
    const whole = await backup();
    expect(whole.bytesRead).toBeGreaterThan(size / 2);
    const again = await backup();
    expect(again.bytesRead).toBeLessThan(size / 8);
    const full = await backup('--reread-after', '0');
    expect(full.bytesRead).toBeGreaterThan(size / 2);
    await virsh('suspend', name);
    try {
      const next = await backup();
      expect(next.bytesRead).toBeLessThan(size / 8);
      expect(await same(await restoredRaw(), await liveRaw('last'))).toBe(true);
    } finally {
      await virsh('resume', name);
    }
  }, 300_000);

  it('after QEMU is killed (its bitmaps broken), reads the disk whole once, drops the broken checkpoint, then reads incrementally again', async () => {
    const size = (await fs.stat(disk)).size;
    const pid = (await fs.readFile(`/run/libvirt/qemu/${name}.pid`, 'utf8')).trim();
    process.kill(Number(pid), 'SIGKILL');
    for (let i = 0; i < 100 && (await virsh('domstate', name)).trim() !== 'shut off'; i++) await new Promise((r) => setTimeout(r, 100));
    await startGuest(name, path.join(home, `${name}.console`));
    const whole = await backup();
    expect(whole.bytesRead).toBeGreaterThan(size / 2);
    expect(whole.warnings).toMatch(/read whole: .*inconsistent/);
    console.log(`after QEMU was killed: ${whole.warnings}`);
    const checkpoints = await ourCheckpoints();
    expect(checkpoints.length).toBe(1);
    await new Promise((r) => setTimeout(r, 1000));
    await virsh('suspend', name);
    try {
      const next = await backup();
      expect(next.bytesRead).toBeLessThan(size / 8);
      expect(await same(await restoredRaw(), await liveRaw('after-kill'))).toBe(true);
    } finally {
      await virsh('resume', name);
    }
  }, 300_000);

  it('aborts the pull backup job a killed backup left (and no one else\'s), then reads incrementally', async () => {
    const size = (await fs.stat(disk)).size;
    const [newest] = (await ourCheckpoints()).sort().reverse();
    // What a backup killed between backup-begin and its abort leaves: the job, its socket in a folder of ours.
    const left = await fs.mkdtemp(path.join(os.tmpdir(), 'vmdedup-nbd-'));
    await fs.chmod(left, 0o777);
    const xml = path.join(left, 'backup.xml');
    await fs.writeFile(xml, `<domainbackup mode='pull'><incremental>${newest}</incremental><server transport='unix' socket='${left}/nbd.sock'/><disks><disk name='vda' backup='yes' type='file'><scratch file='${left}/vda.scratch.qcow2'/></disk></disks></domainbackup>`);
    await virsh('backup-begin', '--domain', name, '--backupxml', xml);
    expect(await virsh('domjobinfo', '--domain', name)).toMatch(/Backup/);
    const next = await backup();
    expect(next.bytesRead).toBeLessThan(size / 8);
    expect(await virsh('domjobinfo', '--domain', name)).not.toMatch(/Backup/);
    expect(await fs.access(left).then(() => true, () => false)).toBe(false);
    // Someone else's job (virtnbdbackup's, a user's) is left alone: that backup fails, saying why, and the job runs on.
    const theirs = await tempDir();
    await fs.chmod(theirs, 0o777);
    await fs.writeFile(path.join(theirs, 'backup.xml'), `<domainbackup mode='pull'><server transport='unix' socket='${theirs}/nbd.sock'/><disks><disk name='vda' backup='yes' type='file'><scratch file='${theirs}/vda.scratch.qcow2'/></disk></disks></domainbackup>`);
    await virsh('backup-begin', '--domain', name, '--backupxml', path.join(theirs, 'backup.xml'));
    try {
      const started = Date.now();
      const refused = await cli(env, 'backup', '--vm', name, '--json');
      expect(refused.code).not.toBe(0);
      expect(refused.stdout + refused.stderr).toMatch(/busy with a job that is not vmdedup's \(backup\)/);
      expect(Date.now() - started).toBeLessThan(20_000); // not libvirt's 30 s lock timeout
      expect(await virsh('domjobinfo', '--domain', name)).toMatch(/Backup/);
    } finally {
      await virsh('domjobabort', '--domain', name).catch(() => undefined);
      await fs.rm(theirs, { recursive: true, force: true });
    }
    expect(await virsh('domblklist', name)).toBe(chainBefore);
    expect((await fs.readdir(img)).filter((f) => f.includes('.vmdedup-'))).toEqual([]);
  }, 300_000);
  it('a shut-off domain reads only what changed since its last checkpoint (taken running or shut off), is left as it is when unchanged, and running again reads from a checkpoint taken shut off', async () => {
    const size = (await fs.stat(disk)).size;
    await backup(); // running: a checkpoint
    let before = await restoredRaw();
    await new Promise((r) => setTimeout(r, 1500)); // the guest writes
    await shutOff();
    // Changed while it ran: read from the bitmap QEMU stored in the file.
    const afterRun = await backup();
    expect(afterRun.consistency).toBe('offline');
    let live = await liveRaw('off-1');
    const changed = await changedBytes(before, live);
    console.log(`shut off, after running: the guest changed ${(changed / MiB).toFixed(2)} MiB; the backup read ${(afterRun.bytesRead / MiB).toFixed(2)} MiB`);
    expect(changed).toBeGreaterThan(0);
    expect(afterRun.bytesRead).toBeLessThanOrEqual(changed + 4 * MiB);
    let restored = await restoredRaw();
    expect(await same(restored, live)).toBe(true);
    // The checkpoint it took (a bitmap in the file libvirt knows of) and the one it read from; no more, in both.
    const kept = (await ourCheckpoints()).sort();
    expect(kept.length).toBe(2);
    expect(await bitmaps()).toEqual(kept);
    // Changed while shut off (1 MiB of the disk's own data, written by qemu-io: any QEMU marks the bitmap).
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x5a ${300 * MiB} ${MiB}`, disk]);
    const offline = await backup();
    console.log(`shut off, 1 MiB written offline: the backup read ${(offline.bytesRead / MiB).toFixed(2)} MiB`);
    expect(offline.bytesRead).toBeLessThanOrEqual(5 * MiB);
    await fs.rm(live);
    live = await liveRaw('off-2');
    await fs.rm(restored);
    restored = await restoredRaw();
    expect(await same(restored, live)).toBe(true);
    expect(await ourCheckpoints()).not.toEqual(kept);
    expect(await bitmaps()).toEqual((await ourCheckpoints()).sort());
    // Unchanged: not read, and its file is not written (no new bitmap).
    const stamp = (await fs.stat(disk)).mtimeMs;
    const checkpoints = await ourCheckpoints();
    const unchanged = await backup();
    expect(unchanged.bytesRead).toBe(0);
    expect((await fs.stat(disk)).mtimeMs).toBe(stamp);
    expect(await ourCheckpoints()).toEqual(checkpoints);
    // Running again: read from the checkpoint taken while shut off.
    await startGuest(name, path.join(home, `${name}.console`));
    await new Promise((r) => setTimeout(r, 1000));
    await virsh('suspend', name);
    try {
      const running = await backup();
      expect(running.warnings).toBe('');
      expect(running.bytesRead).toBeLessThan(size / 8);
      await fs.rm(live);
      live = await liveRaw('on-again');
      await fs.rm(restored);
      restored = await restoredRaw();
      expect(await same(restored, live)).toBe(true);
    } finally {
      await virsh('resume', name);
    }
    expect((await ourCheckpoints()).length).toBe(2);
    await fs.rm(before);
    before = restored;
    // QEMU killed: its bitmaps are left inconsistent in the file. Read whole once (saying why), then incrementally.
    const pid = (await fs.readFile(`/run/libvirt/qemu/${name}.pid`, 'utf8')).trim();
    process.kill(Number(pid), 'SIGKILL');
    for (let i = 0; i < 100 && (await virsh('domstate', name)).trim() !== 'shut off'; i++) await new Promise((r) => setTimeout(r, 100));
    const whole = await backup();
    expect(whole.bytesRead).toBeGreaterThan(size / 2);
    expect(whole.warnings).toMatch(/read whole: .*inconsistent/);
    expect(await bitmaps()).toEqual((await ourCheckpoints()).sort());
    expect((await ourCheckpoints()).length).toBe(1);
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x3c ${320 * MiB} ${MiB}`, disk]);
    const next = await backup();
    expect(next.bytesRead).toBeLessThanOrEqual(5 * MiB);
    await fs.rm(live);
    live = await liveRaw('after-kill-off');
    expect(await same(await restoredRaw(), live)).toBe(true);
    await startGuest(name, path.join(home, `${name}.console`));
  }, 300_000);
});
