/**
 * A libvirt connection source against a real libvirtd and a real QEMU guest (TCG), set up by
 * scripts/libvirt-host.sh (npm test does it and sets VMDEDUP_TEST_LIBVIRT to the guest's folder): a running guest
 * that writes sequence-numbered blocks is backed up at one point in time and left on the disk chain it had; the base
 * it shares with a shut-off linked clone is stored once; a backup killed with SIGKILL while the guest runs on the
 * snapshot overlay is cleaned up by the next one.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, projectRoot, qemuImg, semiCompressible, sha256File, tempDir } from './helpers';
import { URI, checkRunningDisk, domainXml, guestFiles, sequenceCheck, startGuest, virsh } from './libvirt-guest';

const run = promisify(execFile);

type BackupJson = {
  backups: { vm: string; consistency?: string; disks: { path: string; action: string; bytesRead: number }[] }[];
  failures: { vm: string; error: string }[];
};


describe.skipIf(!guestFiles)('a libvirt connection source (real libvirtd, real QEMU guest)', () => {
  const tag = `vmdt${process.pid}`;
  const running = `${tag}-web`;
  const stopped = `${tag}-db`;
  let home: string;
  let img: string;
  let env: Record<string, string>;
  let chainBefore: string;

  const overlaysIn = async () => (await fs.readdir(img)).filter((name) => name.includes('.vmdedup-'));
  // Only this test's domains: the host may define others (a developer's, another test run's).
  const backup = async () => {
    const result = await cli(env, 'backup', '--vm', running, '--vm', stopped, '--json');
    return { ...result, json: result.stdout ? (JSON.parse(result.stdout) as BackupJson) : undefined };
  };

  beforeAll(async () => {
    home = await tempDir();
    img = path.join(home, 'img');
    await fs.mkdir(img);
    await fs.chmod(home, 0o755); // QEMU runs as libvirt-qemu
    await fs.writeFile(path.join(home, 'base.raw'), semiCompressible(32 << 20, 5));
    await qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', path.join(home, 'base.raw'), path.join(img, 'base.qcow2'));
    await qemuImg('resize', '-q', path.join(img, 'base.qcow2'), '256M'); // the guest writes its first 256 MiB
    for (const name of [running, stopped]) {
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', path.join(img, 'base.qcow2'), '-F', 'qcow2', path.join(img, `${name}.qcow2`));
      // A private raw data disk the guest may write (snapshotted too, read in full each backup).
      await fs.writeFile(path.join(img, `${name}-data.raw`), semiCompressible(48 << 20, name.length));
    }
    for (const [name, boots] of [[running, true], [stopped, false]] as const) {
      const xml = path.join(home, `${name}.xml`);
      await fs.writeFile(xml, domainXml(name, home, [
        { dev: 'vda', file: path.join(img, `${name}.qcow2`), format: 'qcow2' },
        { dev: 'vdb', file: path.join(img, `${name}-data.raw`), format: 'raw' },
      ], boots));
      await virsh('define', xml);
    }
    await startGuest(running, path.join(home, `${running}.console`));
    chainBefore = await virsh('domblklist', running);
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    const added = await cli(env, 'source', 'add', 'host', '--type', 'libvirt', '--uri', URI, '--storage', img);
    expect(added.code, added.stderr).toBe(0);
    const inventory = JSON.parse((await cli(env, 'inventory', '--json')).stdout) as { sources: { vms: { name: string; state?: string }[] }[] };
    expect(inventory.sources[0].vms.filter((vm) => vm.name.startsWith(tag)).map((vm) => [vm.name, vm.state])).toEqual([[stopped, 'shut off'], [running, 'running']]);
  }, 180_000);

  afterAll(async () => {
    for (const name of [running, stopped, `${tag}-copy`]) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name, '--checkpoints-metadata').catch(() => undefined);
    }
    await fs.rm(home, { recursive: true, force: true });
  });

  it('backs up the running guest at one point in time, leaves it running on its chain, and stores the shared base once', async () => {
    const result = await backup();
    expect(result.code, result.stderr).toBe(0);
    const ours = result.json!.backups.filter((b) => b.vm.startsWith(tag)).sort((a, b) => (a.vm < b.vm ? -1 : 1));
    expect(ours.map((b) => [b.vm, b.consistency])).toEqual([[stopped, 'offline'], [running, 'crash']]);
    const base = ours.flatMap((b) => b.disks).filter((d) => d.path === path.join(img, 'base.qcow2'));
    expect(base.map((d) => d.action).sort()).toEqual(['referenced', 'stored']);
    expect(base.find((d) => d.action === 'referenced')!.bytesRead).toBe(0);
    // The host as it was: running, on the same files, no overlay left.
    expect((await virsh('domstate', running)).trim()).toBe('running');
    expect(await virsh('domblklist', running)).toBe(chainBefore);
    expect(await overlaysIn()).toEqual([]);
    expect(await virsh('dumpxml', '--inactive', running)).toContain(`file='${path.join(img, `${running}.qcow2`)}'`);

    const plan = await cli(env, 'restore-plan', running, '--target', path.join(home, 'planned'), '--json');
    expect((JSON.parse(plan.stdout) as { consistency: string; message: string })).toMatchObject({ consistency: 'crash', message: expect.stringContaining('crash-consistent') });
    const listed = JSON.parse((await cli(env, 'backups', '--vm', stopped, '--json')).stdout) as { backups: { consistency?: string }[] };
    expect(listed.backups.map((b) => b.consistency)).toEqual(['offline']);
    const target = path.join(home, 'restored');
    const restored = await cli(env, 'restore', running, '--target', target, '--json');
    expect(restored.code, restored.stderr).toBe(0);
    const vda = path.join(target, path.relative('/', img), `${running}.qcow2`);
    await qemuImg('check', vda);
    await qemuImg('convert', '-O', 'raw', vda, path.join(home, 'vda.raw'));
    const check = await sequenceCheck(path.join(home, 'vda.raw'));
    expect(check.highest).toBeGreaterThanOrEqual(0);
    expect(check.wrong).toEqual([]);
    // The restored definition is the persistent one, not the snapshot's.
    expect(await fs.readFile(path.join(target, 'etc/libvirt/qemu', `${running}.xml`), 'utf8')).toContain(`<name>${running}</name>`);
  });

  it('a catalog rebuilt from the repository keeps the source a libvirt connection (a folder source would read running VMs torn)', async () => {
    const fresh = { ...env, DATABASE_URL: await createTestDatabase() };
    const rebuilt = await cli(fresh, 'catalog', 'rebuild');
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const listed = JSON.parse((await cli(fresh, 'source', 'list', '--json')).stdout) as { sources: { name: string; uri?: string; path: string }[] };
    expect(listed.sources).toEqual([expect.objectContaining({ name: 'host', uri: URI, path: '/etc/libvirt/qemu' })]);
  });

  it('restores in place only a shut-off domain, through libvirt: its disk bytes back, defined again, not started', async () => {
    const runningDisk = path.join(img, `${running}.qcow2`);
    const refused = await cli(env, 'restore', running, '--in-place', '--json');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/is running on qemu:\/\/\/system: shut it off first/);
    expect(await virsh('domblklist', running)).toBe(chainBefore);

    const disk = path.join(img, `${stopped}.qcow2`);
    const backedUp = await sha256File(disk);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x33 0 1M', disk]);
    expect(await sha256File(disk)).not.toBe(backedUp);
    await virsh('undefine', stopped, '--checkpoints-metadata'); // gone from the host: the restore defines it again
    const done = await cli(env, 'restore', stopped, '--in-place', '--json');
    expect(done.code, done.stderr).toBe(0);
    expect(await sha256File(disk)).toBe(backedUp);
    expect((await virsh('domstate', stopped)).trim()).toBe('shut off');
    expect(await virsh('dumpxml', '--inactive', stopped)).toContain(`file='${disk}'`);
    expect((await virsh('domstate', running)).trim()).toBe('running');
    await checkRunningDisk(running, runningDisk);
  });

  it('restores a running domain as a new VM: another name and UUID, no MAC, its restored files, defined and shut off', async () => {
    const copy = `${tag}-copy`;
    const target = path.join(home, 'as-new');
    const taken = await cli(env, 'restore', running, '--target', path.join(home, 'as-taken'), '--as', stopped, '--json');
    expect(taken.code).toBe(2);
    expect(taken.stderr).toMatch(/already exists/);
    const done = await cli(env, 'restore', running, '--target', target, '--as', copy, '--json');
    expect(done.code, done.stderr).toBe(0);
    expect((await virsh('domstate', copy)).trim()).toBe('shut off');
    const xml = await virsh('dumpxml', '--inactive', copy);
    const uuid = (await virsh('domuuid', copy)).trim();
    expect(uuid).not.toBe((await virsh('domuuid', running)).trim());
    expect(xml).toContain(`file='${path.join(target, path.relative('/', img), `${running}.qcow2`)}'`);
    expect(await virsh('domblklist', running)).toBe(chainBefore); // the original is untouched
  });

  it('after a backup killed while the guest ran on the snapshot overlay, the next one commits it back and backs up', async () => {
    let leftOver: string[] = [];
    for (let attempt = 0; attempt < 5 && leftOver.length === 0; attempt++) {
      const child = spawn(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), 'backup', '--vm', running, '--json'], { env: { ...process.env, ...env }, stdio: 'ignore' });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      let done = false;
      void exited.then(() => { done = true; });
      while (!done && (await overlaysIn()).length === 0) await new Promise((r) => setTimeout(r, 5));
      if (!done) child.kill('SIGKILL');
      await exited;
      leftOver = (await virsh('domblklist', running)).includes('.vmdedup-') ? await overlaysIn() : [];
    }
    expect(leftOver.length, 'a kill landed while the guest ran on the overlay').toBeGreaterThan(0);
    expect((await virsh('domstate', running)).trim()).toBe('running');

    const result = await backup();
    expect(result.code, result.stderr).toBe(0);
    expect(result.json!.backups.find((b) => b.vm === running)?.consistency).toBe('crash');
    expect(await virsh('domblklist', running)).toBe(chainBefore);
    expect(await overlaysIn()).toEqual([]);
    expect((await virsh('domstate', running)).trim()).toBe('running');
    await checkRunningDisk(running, path.join(img, `${running}.qcow2`));
  });
});
