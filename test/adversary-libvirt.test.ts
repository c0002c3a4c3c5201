/**
 * Adversary review of libvirt connection sources, against the real libvirtd and a TCG guest (set up by
 * scripts/libvirt-host.sh; VMDEDUP_TEST_LIBVIRT names the guest's folder): odd disk paths and domain names, disks
 * that must not be snapshotted, a backup killed at points the other test does not reach, a disk whose name looks
 * like an overlay, and bad connections.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, qemuImg, semiCompressible, tempDir } from './helpers';
import { URI, guestFiles, sequenceCheck, virsh } from './libvirt-guest';

const run = promisify(execFile);

type BackupJson = {
  backups: { vm: string; consistency?: string; disks: { path: string; action: string; bytesRead: number }[] }[];
  failures: { vm: string; error: string }[];
};


const xmlEscape = (value: string) => value.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/</g, '&lt;');

async function sha(file: string): Promise<string> {
  return createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

function fileDisk(dev: string, file: string, format: string, extra = '', device = 'disk', bus = 'virtio'): string {
  return `<disk type='file' device='${device}'><driver name='qemu' type='${format}'/><source file='${xmlEscape(file)}'/><target dev='${dev}' bus='${bus}'/>${extra}</disk>`;
}

function domainXml(name: string, consoleFile: string, disks: string[], boots: boolean): string {
  const os = boots
    ? `<os><type arch='x86_64' machine='pc'>hvm</type><kernel>${guestFiles}/vmlinuz</kernel><initrd>${guestFiles}/initrd.img</initrd><cmdline>console=ttyS0 panic=-1 quiet</cmdline></os>`
    : `<os><type arch='x86_64' machine='pc'>hvm</type></os>`;
  return `<domain type='qemu'><name>${xmlEscape(name)}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>${os}
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    ${disks.join('\n    ')}
    <serial type='file'><source path='${xmlEscape(consoleFile)}'/><target port='0'/></serial>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices></domain>\n`;
}

describe.skipIf(!guestFiles)('adversary: a libvirt connection source', () => {
  const tag = `adv${process.pid}`;
  const g1 = `${tag}-g1`; // persistent, running: odd file names, read-only / shareable / cdrom disks
  const clone = `${tag}-clone`; // persistent, shut off, a linked clone of base
  const g2 = `${tag}-t`; // transient, running: its disk's name looks like one of the tool's overlays
  const mine = [g1, clone, g2];
  let home: string;
  let img: string;
  let env: Record<string, string>;
  let g1Vda: string;
  let g1Data: string;
  let g2Vda: string;
  let baseSha: string;

  const overlaysIn = async () => (await fs.readdir(img)).filter((name) => name.includes('.vmdedup-') && name !== path.basename(g2Vda));
  const backup = async (...vms: string[]) => {
    const result = await cli(env, 'backup', ...vms.flatMap((vm) => [`--vm=${vm}`]), '--json');
    return { ...result, json: result.stdout ? (JSON.parse(result.stdout) as BackupJson) : undefined };
  };
  const waitFor = async (file: string, text: string) => {
    for (let i = 0; i < 900 && !(await fs.readFile(file, 'utf8').catch(() => '')).includes(text); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await fs.readFile(file, 'utf8')).toContain(text);
  };
  const lastSeq = async (consoleFile: string) => Math.max(...[...(await fs.readFile(consoleFile, 'utf8')).matchAll(/wrote seq=(\d+)/g)].map((m) => Number(m[1])));
  const restoredVda = async (vm: string, file: string) => {
    const target = path.join(home, `restored-${Date.now()}`);
    const restored = await cli(env, 'restore', vm, '--target', target, '--json');
    expect(restored.code, restored.stderr).toBe(0);
    const copy = path.join(target, path.relative('/', file));
    await qemuImg('check', copy);
    const raw = path.join(home, `check-${Date.now()}.raw`);
    await qemuImg('convert', '-O', 'raw', copy, raw);
    const check = await sequenceCheck(raw);
    await fs.rm(target, { recursive: true, force: true });
    await fs.rm(raw, { force: true });
    return check;
  };

  beforeAll(async () => {
    home = await tempDir();
    img = path.join(home, 'img');
    await fs.mkdir(img);
    await fs.writeFile(path.join(home, 'base.raw'), semiCompressible(16 << 20, 7));
    const base = path.join(img, 'base.qcow2');
    await qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', path.join(home, 'base.raw'), base);
    await qemuImg('resize', '-q', base, '256M');
    baseSha = await sha(base);
    // Quotes, spaces, '&' in the written disk's name; a comma in the data disk's (virsh splits --diskspec on commas).
    g1Vda = path.join(img, `g1 it's "a&b".qcow2`);
    g1Data = path.join(img, 'data,1.raw');
    g2Vda = path.join(img, 't.vmdedup-1.qcow2');
    for (const file of [g1Vda, path.join(img, 'clone.qcow2'), g2Vda]) await qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', file);
    // An unrelated disk whose name is g2's without the overlay-like suffix.
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(img, 't'), '1M');
    await fs.writeFile(g1Data, semiCompressible(8 << 20, 3));
    await fs.writeFile(path.join(img, 'ro.raw'), semiCompressible(4 << 20, 4));
    await fs.writeFile(path.join(img, 'cd.iso'), semiCompressible(2 << 20, 6));
    const g1Xml = path.join(home, 'g1.xml');
    await fs.writeFile(g1Xml, domainXml(g1, path.join(home, 'g1.console'), [
      fileDisk('vda', g1Vda, 'qcow2'),
      fileDisk('vdb', g1Data, 'raw'),
      fileDisk('vdc', path.join(img, 'ro.raw'), 'raw', '<readonly/>'),
      fileDisk('hdc', path.join(img, 'cd.iso'), 'raw', '<readonly/>', 'cdrom', 'ide'),
    ], true));
    await virsh('define', g1Xml);
    const cloneXml = path.join(home, 'clone.xml');
    await fs.writeFile(cloneXml, domainXml(clone, path.join(home, 'clone.console'), [fileDisk('vda', path.join(img, 'clone.qcow2'), 'qcow2')], false));
    await virsh('define', cloneXml);
    await virsh('start', g1);
    const g2Xml = path.join(home, 'g2.xml');
    await fs.writeFile(g2Xml, domainXml(g2, path.join(home, 'g2.console'), [fileDisk('vda', g2Vda, 'qcow2')], true));
    await virsh('create', g2Xml);
    await waitFor(path.join(home, 'g1.console'), 'wrote seq=0');
    await waitFor(path.join(home, 'g2.console'), 'wrote seq=0');
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    const added = await cli(env, 'source', 'add', 'host', '--type', 'libvirt', '--uri', URI, '--storage', img);
    expect(added.code, added.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    for (const name of [...mine, `--${tag}-odd`, `${tag}-sp `]) {
      await virsh('destroy', '--domain', name).catch(() => undefined);
      await virsh('undefine', '--domain', name, '--checkpoints-metadata').catch(() => undefined);
    }
    if (home) await fs.rm(home, { recursive: true, force: true });
  });

  it('backs up a running domain with a quoted, a comma-named, a read-only disk and a CD-ROM', async () => {
    const chain = await virsh('domblklist', g1);
    const before = await lastSeq(path.join(home, 'g1.console'));
    const result = await backup(g1, clone);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.json!.backups.map((b) => [b.vm, b.consistency]).sort()).toEqual([[clone, 'offline'], [g1, 'crash']]);
    expect(await virsh('domblklist', g1)).toBe(chain);
    expect(await overlaysIn()).toEqual([]);
    expect(await sha(path.join(img, 'base.qcow2'))).toBe(baseSha);
    const check = await restoredVda(g1, g1Vda);
    expect(check.highest).toBeGreaterThanOrEqual(before);
    expect(check.wrong).toEqual([]);
  });

  it('backs up a paused domain and leaves it paused', async () => {
    await virsh('suspend', g1);
    try {
      const result = await backup(g1);
      expect(result.code, result.stderr + result.stdout).toBe(0);
      expect((await virsh('domstate', g1)).trim()).toBe('paused');
      expect(await overlaysIn()).toEqual([]);
    } finally {
      await virsh('resume', g1);
    }
  });

  it('a disk whose name looks like an overlay but is a linked clone is not committed into the shared base nor removed', async () => {
    const chain = await virsh('domblklist', g2);
    const result = await backup(g2);
    expect(await fs.stat(g2Vda).then(() => true, () => false), 'the domain\'s own disk is still there').toBe(true);
    expect(await sha(path.join(img, 'base.qcow2')), 'the base shared with a shut-off clone is unchanged').toBe(baseSha);
    expect(await virsh('domblklist', g2)).toBe(chain);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(await overlaysIn()).toEqual([]);
  });

  it('after a backup killed while virsh waited for the commit job (job ready, never pivoted), the next backup recovers', async () => {
    const overlay = `${g1Vda}.vmdedup-zz1.qcow2`;
    await virsh('snapshot-create-as', '--domain', g1, '--disk-only', '--atomic', '--no-metadata',
      '--diskspec', `vda,snapshot=external,file=${overlay}`, '--diskspec', 'vdb,snapshot=no', '--diskspec', 'vdc,snapshot=no', '--diskspec', 'hdc,snapshot=no');
    const console = path.join(home, 'g1.console');
    const onOverlay = await lastSeq(console);
    for (let i = 0; i < 100 && (await lastSeq(console)) < onOverlay + 50; i++) await new Promise((r) => setTimeout(r, 200));
    const written = await lastSeq(console);
    // What virsh blockcommit --wait --pivot killed before its pivot leaves: the active commit job, ready.
    await virsh('blockcommit', '--domain', g1, '--path', 'vda', '--active', '--shallow');
    for (let i = 0; i < 100 && !/ready|100 %/.test(await virsh('blockjob', '--domain', g1, '--path', 'vda', '--info').catch(() => '')); i++) await new Promise((r) => setTimeout(r, 100));

    const result = await backup(g1);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(await virsh('domblklist', g1)).not.toContain('.vmdedup-');
    expect(await overlaysIn()).toEqual([]);
    const check = await restoredVda(g1, g1Vda);
    expect(check.highest, 'the writes made on the overlay are in the disk').toBeGreaterThanOrEqual(written);
    expect(check.wrong).toEqual([]);
  });

  it('after a backup killed right after the pivot, before the overlay was removed, the next backup leaves no overlay', async () => {
    const overlay = `${g1Vda}.vmdedup-zz2.qcow2`;
    await virsh('snapshot-create-as', '--domain', g1, '--disk-only', '--atomic', '--no-metadata',
      '--diskspec', `vda,snapshot=external,file=${overlay}`, '--diskspec', 'vdb,snapshot=no', '--diskspec', 'vdc,snapshot=no', '--diskspec', 'hdc,snapshot=no');
    await virsh('blockcommit', '--domain', g1, '--path', 'vda', '--active', '--pivot', '--shallow', '--wait');
    expect(await overlaysIn()).toEqual([path.basename(overlay)]);
    const result = await cli(env, 'backup', `--vm=${g1}`);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    // Not removed (a file so named could be another domain's), but named in a warning.
    expect(result.stderr).toContain(`no longer runs on ${overlay}`);
    expect(await overlaysIn()).toEqual([path.basename(overlay)]);
    await fs.rm(overlay);
  });

  it('refuses a shut-off domain left on an overlay, changing nothing', async () => {
    const disk = path.join(img, 'clone.qcow2');
    const overlay = `${disk}.vmdedup-zz3.qcow2`;
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', disk, '-F', 'qcow2', overlay);
    const xml = path.join(home, 'clone-on-overlay.xml');
    const uuid = (await virsh('domuuid', clone)).trim();
    await fs.writeFile(xml, domainXml(clone, path.join(home, 'clone.console'), [fileDisk('vda', overlay, 'qcow2')], false).replace('<name>', `<uuid>${uuid}</uuid><name>`));
    await virsh('define', xml);
    try {
      const diskSha = await sha(disk);
      const result = await backup(clone);
      expect(result.code).not.toBe(0);
      expect(result.json!.failures.find((f) => f.vm === clone)?.error).toMatch(/overlay a killed backup left/);
      expect(await sha(disk)).toBe(diskSha);
      expect(await fs.stat(overlay).then(() => true, () => false)).toBe(true);
    } finally {
      await fs.writeFile(xml, domainXml(clone, path.join(home, 'clone.console'), [fileDisk('vda', disk, 'qcow2')], false).replace('<name>', `<uuid>${uuid}</uuid><name>`));
      await virsh('define', xml);
      await fs.rm(overlay, { force: true });
    }
  });

  it('a domain named like an option, or with a trailing space, does not stop the host\'s other domains being backed up', async () => {
    const odd = [`--${tag}-odd`, `${tag}-sp `];
    for (const [i, name] of odd.entries()) {
      const xml = path.join(home, `odd${i}.xml`);
      await fs.writeFile(xml, domainXml(name, path.join(home, `odd${i}.console`), [], false));
      await virsh('define', xml);
    }
    try {
      const result = await backup(clone);
      expect(result.code, result.stderr + result.stdout).toBe(0);
      expect(result.json!.backups.map((b) => b.vm)).toEqual([clone]);
    } finally {
      for (const name of odd) await virsh('undefine', '--domain', name, '--checkpoints-metadata').catch(() => undefined);
    }
  });

  it('an unsupported or garbage --uri, and a host without virsh or whose libvirtd does not answer: one line, exit 2', async () => {
    for (const uri of ['qemu+ssh://root@example.invalid/system', 'garbage', 'qemu:///sys']) {
      const result = await cli(env, 'source', 'add', `bad${uri.length}`, '--type', 'libvirt', '--uri', uri);
      expect(result.code, uri).toBe(2);
      expect(result.stderr.trim().split('\n'), result.stderr).toHaveLength(1);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
    const fake = path.join(home, 'fakebin');
    await fs.mkdir(fake, { recursive: true });
    // Node alone on the PATH (no virsh), then node and a virsh that cannot reach libvirtd.
    const nodeDir = path.join(home, 'nodebin');
    await fs.mkdir(nodeDir, { recursive: true });
    await fs.symlink(process.execPath, path.join(nodeDir, 'node')).catch(() => undefined);
    for (const [what, pathEnv] of [['no virsh', `${nodeDir}:/nonexistent`], ['libvirtd down', `${fake}:${nodeDir}:/nonexistent`]] as const) {
      await fs.writeFile(path.join(fake, 'virsh'), '#!/bin/sh\necho "error: failed to connect to the hypervisor" >&2\necho "error: Failed to connect socket to \'/var/run/libvirt/virtqemud-sock\': No such file or directory" >&2\nexit 1\n', { mode: 0o755 });
      if (what === 'no virsh') await fs.rm(path.join(fake, 'virsh'));
      const added = await cli({ ...env, PATH: pathEnv }, 'source', 'add', 'down', '--type', 'libvirt', '--uri', URI);
      expect(added.code, what).toBe(2);
      expect(added.stderr.trim().split('\n'), added.stderr).toHaveLength(1);
      const result = await cli({ ...env, PATH: pathEnv }, 'backup', `--vm=${clone}`);
      expect(result.code, what + result.stderr).toBe(2);
      expect(result.stderr, what).not.toMatch(/\n\s+at /);
      expect(result.stderr.trim().split('\n').length, result.stderr).toBeLessThanOrEqual(2);
    }
  });
});
