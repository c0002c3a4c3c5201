/**
 * Per-VM isolation: each bad VM, disk, file or source gives one line for what it concerns and exit 2, and every
 * other VM of the run is backed up and recorded. Nothing may hang a run (the CLI is killed after a minute here,
 * so a hang fails the test instead of stalling it).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeData } from '../lib/demo/fleet';
import { cli, type CliResult, createTestDatabase, libvirtDomainXml, projectRoot, qemuImg, repositoryImageIds, run, storedImage, tempDir } from './helpers';

type BackupJson = {
  backups: { vm: string; disks: { path: string; identifier: string; common: boolean; action: string; bytesRead: number }[] }[];
  failures: { vm: string; source: string; error: string }[];
  problems?: { source: string; message: string }[];
};

const MiB = 1024 * 1024;

/** The CLI with a deadline: a run that hangs (a FIFO opened for reading) is killed and reported as such. */
async function cliWithin(env: Record<string, string>, ...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), ...args], {
      env: { ...process.env, ...env }, cwd: projectRoot, maxBuffer: 64 * MiB, timeout: 60_000, killSignal: 'SIGKILL',
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; killed?: boolean; stdout?: string; stderr?: string };
    if (e.killed) throw new Error(`vmdedup ${args.join(' ')} hung and was killed after 60 s`);
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const uuidOf = (name: string) => `00000000-0000-4000-8000-${Buffer.from(name).toString('hex').padStart(12, '0').slice(-12)}`;
const domain = (name: string, disks: { file: string; type?: string | null; dev?: string }[], uuid = uuidOf(name)) => libvirtDomainXml(name, uuid, disks);

function failuresByVm(report: BackupJson): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of report.failures) (out[f.vm] ??= []).push(f.error);
  return out;
}

describe('per-VM isolation', () => {
  let home: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    home = await tempDir();
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
  });

  /** A source folder with one healthy VM ('good') besides whatever `build` puts there. */
  async function source(name: string, type: 'libvirt' | 'vmware', build: (root: string) => Promise<void>): Promise<string> {
    const root = path.join(home, name);
    await fs.mkdir(root);
    if (type === 'libvirt') {
      await writeData(path.join(root, 'good.raw'), MiB, 1);
      await fs.writeFile(path.join(root, 'good.xml'), domain('good', [{ file: 'good.raw' }]));
    }
    await build(root);
    const added = await cli(env, 'source', 'add', name, '--type', type, '--path', root);
    expect(added.code, added.stderr).toBe(0);
    return root;
  }

  async function backup(sourceName: string): Promise<{ result: CliResult; report: BackupJson; lines: string[] }> {
    const result = await cliWithin(env, 'backup', '--source', sourceName, '--json');
    let report: BackupJson;
    try {
      report = JSON.parse(result.stdout) as BackupJson;
    } catch {
      throw new Error(`exit ${result.code}, no JSON report; stderr: ${result.stderr}`);
    }
    return { result, report, lines: result.stderr.trim().split('\n').filter(Boolean) };
  }

  async function recordedVms(sourceName: string): Promise<string[]> {
    const listed = JSON.parse((await cli(env, 'backups', '--json')).stdout) as { backups: { vm: string; source: string }[] };
    return [...new Set(listed.backups.filter((b) => b.source === sourceName).map((b) => b.vm))].sort();
  }

  it('refuses every VM of an ambiguous name or UUID, each naming the other config; the rest is backed up', async () => {
    const root = await source('names', 'libvirt', async (dir) => {
      await writeData(path.join(dir, 'twin-a.raw'), MiB, 2);
      await writeData(path.join(dir, 'twin-b.raw'), MiB, 3);
      await fs.writeFile(path.join(dir, 'twin-a.xml'), domain('twin', [{ file: 'twin-a.raw' }], uuidOf('twin-a')));
      await fs.writeFile(path.join(dir, 'twin-b.xml'), domain('twin', [{ file: 'twin-b.raw' }], uuidOf('twin-b')));
      // a copied VM folder keeps the UUID (written here once with dashes, once without and in capitals)
      await fs.mkdir(path.join(dir, 'orig'));
      await fs.mkdir(path.join(dir, 'copy'));
      await writeData(path.join(dir, 'orig', 'disk.raw'), MiB, 4);
      await fs.copyFile(path.join(dir, 'orig', 'disk.raw'), path.join(dir, 'copy', 'disk.raw'));
      await fs.writeFile(path.join(dir, 'orig', 'orig.xml'), domain('orig', [{ file: 'disk.raw' }], '6f1c2a3e-aaaa-4000-8000-000000000001'));
      await fs.writeFile(path.join(dir, 'copy', 'clone.xml'), domain('clone', [{ file: 'disk.raw' }], '6F1C2A3EAAAA40008000000000000001'));
      // libvirt's autostart links point at configs already found: the same VM, not a second one
      await fs.mkdir(path.join(dir, 'autostart'));
      await fs.symlink('../good.xml', path.join(dir, 'autostart', 'good.xml'));
    });
    const { result, report, lines } = await backup('names');
    expect(result.code).toBe(2);
    expect(report.backups.map((b) => b.vm)).toEqual(['good']);
    const errors = failuresByVm(report);
    expect(errors.twin).toHaveLength(2);
    expect(errors.twin.find((e) => e.startsWith(path.join(root, 'twin-a.xml')))).toMatch(/VM name 'twin' is also defined by .*twin-b\.xml/);
    expect(errors.twin.find((e) => e.startsWith(path.join(root, 'twin-b.xml')))).toMatch(/VM name 'twin' is also defined by .*twin-a\.xml/);
    expect(errors.orig).toEqual([expect.stringMatching(/orig\.xml: UUID 6f1c2a3e-aaaa-4000-8000-000000000001 is also used by .*copy\/clone\.xml/)]);
    expect(errors.clone).toEqual([expect.stringMatching(/clone\.xml: UUID .* is also used by .*orig\/orig\.xml/)]);
    expect(lines).toHaveLength(4);
    for (const line of lines) expect(line).toMatch(/^vmdedup: \w+: \/.*not backed up/);
    expect(await recordedVms('names')).toEqual(['good']);
  });

  it('fails a VM that attaches one disk in two slots (directly, or as the parent of another slot), naming both', async () => {
    await source('slots', 'libvirt', async (dir) => {
      await writeData(path.join(dir, 'same.raw'), MiB, 5);
      await fs.writeFile(path.join(dir, 'twoslots.xml'), domain('twoslots', [{ file: 'same.raw' }, { file: './same.raw' }]));
      await qemuImg('create', '-q', '-f', 'qcow2', path.join(dir, 'base.qcow2'), '1M');
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(dir, 'child.qcow2'));
      await fs.writeFile(path.join(dir, 'parentslot.xml'), domain('parentslot', [{ file: 'child.qcow2', type: 'qcow2' }, { file: 'base.qcow2', type: 'qcow2' }]));
    });
    const { result, report, lines } = await backup('slots');
    expect(result.code).toBe(2);
    expect(report.backups.map((b) => b.vm)).toEqual(['good']);
    const errors = failuresByVm(report);
    expect(errors.twoslots).toEqual([expect.stringMatching(/same\.raw: disk is attached in two slots, vda and vdb/)]);
    expect(errors.parentslot).toEqual([expect.stringMatching(/base\.qcow2: disk is attached in slot vdb and is also the parent of the disk in slot vda/)]);
    expect(lines).toHaveLength(2);
    expect(await recordedVms('slots')).toEqual(['good']);
  });

  it('backs up two VMDKs with the same ddb.uuid under their paths, with one line naming both, and exits 2', async () => {
    const root = await source('copied', 'vmware', async (dir) => {
      const vmx = (name: string, n: number) => `displayName = "${name}"\nuuid.bios = "56 4d 00 00 00 00 00 0${n}-00 00 00 00 00 00 00 0${n}"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "app.vmdk"\n`;
      await fs.mkdir(path.join(dir, 'app'));
      await writeData(path.join(dir, 'app.raw'), MiB, 6);
      await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', path.join(dir, 'app.raw'), path.join(dir, 'app', 'app.vmdk'));
      await fs.rm(path.join(dir, 'app.raw'));
      const descriptor = (await fs.readFile(path.join(dir, 'app', 'app.vmdk'), 'latin1')).split('\0')[0];
      await fs.writeFile(path.join(dir, 'app', 'app.vmdk'), `${descriptor.trimEnd()}\nddb.uuid = "60 00 c2 9a 00 00 00 00-00 00 00 00 00 00 00 01"\n`);
      await fs.writeFile(path.join(dir, 'app', 'app.vmx'), vmx('app', 1));
      // "I copied it": VMware gives the copy a new uuid.bios, but its disk keeps the ddb.uuid
      await fs.cp(path.join(dir, 'app'), path.join(dir, 'app-copy'), { recursive: true });
      await fs.writeFile(path.join(dir, 'app-copy', 'app.vmx'), vmx('app-copy', 2));
    });
    const { result, report, lines } = await backup('copied');
    expect(result.code).toBe(2);
    expect(report.failures).toEqual([]);
    expect(report.backups.map((b) => b.vm).sort()).toEqual(['app', 'app-copy']);
    const identifiers = report.backups.flatMap((b) => b.disks.map((d) => d.identifier)).sort();
    expect(identifiers).toEqual(['path:app-copy/app.vmdk', 'path:app/app.vmdk']);
    expect(report.problems).toEqual([{ source: 'copied', message: expect.stringMatching(/vmdk-uuid:6000c29a000000000000000000000001 is given to 2 disk files/) }]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^vmdedup: source 'copied': .*new ddb\.uuid/);
    expect(lines[0]).toContain(path.join(root, 'app', 'app.vmdk'));
    expect(lines[0]).toContain(path.join(root, 'app-copy', 'app.vmdk'));
    expect(await recordedVms('copied')).toEqual(['app', 'app-copy']);
  });

  it('refuses special files named as disks, extents or configs before opening them, and never hangs', async () => {
    let charDevice = false;
    const sockets: net.Server[] = [];
    await source('special', 'libvirt', async (dir) => {
      await run('mkfifo', [path.join(dir, 'pipe.raw')]);
      await fs.writeFile(path.join(dir, 'fifo.xml'), domain('fifo', [{ file: 'pipe.raw' }]));
      const socketPath = path.join(dir, 'sock.raw');
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));
      sockets.push(server);
      await fs.writeFile(path.join(dir, 'socket.xml'), domain('socket', [{ file: 'sock.raw' }]));
      // a qcow2 whose backing file is a FIFO
      await run('mkfifo', [path.join(dir, 'pipe-base.qcow2')]);
      await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'pipe-base.qcow2', '-F', 'qcow2', path.join(dir, 'over-pipe.qcow2'), '1M');
      await fs.writeFile(path.join(dir, 'backing.xml'), domain('backing', [{ file: 'over-pipe.qcow2', type: 'qcow2' }]));
      charDevice = await run('mknod', [path.join(dir, 'null.raw'), 'c', '1', '3']).then(() => true, () => false);
      if (charDevice) await fs.writeFile(path.join(dir, 'chardev.xml'), domain('chardev', [{ file: 'null.raw' }]));
      // a config that is a FIFO, and a symlinked config leading to one
      await run('mkfifo', [path.join(dir, 'pipe.xml')]);
      await run('mkfifo', [path.join(dir, 'pipe-config')]);
      await fs.symlink('pipe-config', path.join(dir, 'linked.xml'));
    });
    const vmwareRoot = await source('special-vmware', 'vmware', async (dir) => {
      await fs.mkdir(path.join(dir, 'ok'));
      await writeData(path.join(dir, 'ok.raw'), MiB, 7);
      await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', path.join(dir, 'ok.raw'), path.join(dir, 'ok', 'ok.vmdk'));
      await fs.writeFile(path.join(dir, 'ok', 'ok.vmx'), 'displayName = "ok"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "ok.vmdk"\n');
      await fs.mkdir(path.join(dir, 'piped'));
      await fs.writeFile(path.join(dir, 'piped', 'piped.vmdk'), '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "piped-flat.vmdk" 0\n');
      await run('mkfifo', [path.join(dir, 'piped', 'piped-flat.vmdk')]);
      await fs.writeFile(path.join(dir, 'piped', 'piped.vmx'), 'displayName = "piped"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "piped.vmdk"\n');
    });
    try {
      const { result, report, lines } = await backup('special');
      expect(result.code).toBe(2);
      expect(report.backups.map((b) => b.vm)).toEqual(['good']);
      const errors = failuresByVm(report);
      expect(errors.fifo).toEqual([expect.stringMatching(/pipe\.raw: is a FIFO, not a regular file/)]);
      expect(errors.socket).toEqual([expect.stringMatching(/sock\.raw: is a socket, not a regular file/)]);
      expect(errors.backing).toEqual([expect.stringMatching(/pipe-base\.qcow2: is a FIFO, not a regular file/)]);
      if (charDevice) expect(errors.chardev).toEqual([expect.stringMatching(/null\.raw: is a character device, not a regular file/)]);
      expect(errors.pipe).toEqual([expect.stringMatching(/pipe\.xml: is a FIFO, not a regular file/)]);
      // named after the link: that is the config the admin put there
      expect(errors.linked).toEqual([expect.stringMatching(/pipe-config: is a FIFO, not a regular file.*named by .*linked\.xml/)]);
      expect(lines).toHaveLength(charDevice ? 6 : 5);
      expect(await recordedVms('special')).toEqual(['good']);

      const vmware = await backup('special-vmware');
      expect(vmware.result.code).toBe(2);
      expect(vmware.report.backups.map((b) => b.vm)).toEqual(['ok']);
      expect(failuresByVm(vmware.report).piped).toEqual([expect.stringMatching(new RegExp(`^${vmwareRoot}/piped/piped-flat\\.vmdk: is a FIFO, not a regular file`))]);
    } finally {
      for (const server of sockets) server.close();
    }
  });

  it('refuses an oversized config and XML with DOCTYPE or ENTITY declarations, one line each', async () => {
    await source('configs', 'libvirt', async (dir) => {
      await writeData(path.join(dir, 'other.raw'), MiB, 8);
      const big = domain('big', [{ file: 'good.raw' }]).replace('<devices>', `<description>${'x'.repeat(5 * MiB)}</description><devices>`);
      await fs.writeFile(path.join(dir, 'big.xml'), big);
      // an entity would turn the disk into another VM's file; nothing is ever expanded
      await fs.writeFile(path.join(dir, 'entity.xml'), `<?xml version="1.0"?>\n<!DOCTYPE domain [ <!ENTITY disk "other.raw"> ]>\n${domain('entity', [{ file: '&disk;' }])}`);
      await fs.writeFile(path.join(dir, 'laughs.xml'), `<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n${domain('laughs', [{ file: 'good.raw' }]).replace('<devices>', '<description>&b;</description><devices>')}`);
    });
    const { result, report, lines } = await backup('configs');
    expect(result.code).toBe(2);
    expect(report.backups.map((b) => b.vm)).toEqual(['good']);
    const errors = failuresByVm(report);
    expect(errors.big).toEqual([expect.stringMatching(/big\.xml: config file is 5\.0 MiB, over the 4 MiB limit/)]);
    expect(errors.entity).toEqual([expect.stringMatching(/entity\.xml: XML with a DOCTYPE or ENTITY declaration is refused/)]);
    expect(errors.laughs).toEqual([expect.stringMatching(/laughs\.xml: XML with a DOCTYPE or ENTITY declaration is refused/)]);
    expect(lines).toHaveLength(3);
    expect(await recordedVms('configs')).toEqual(['good']);
  });

  it('reports a registered source whose folder vanished in one line, and backs up the other sources', async () => {
    const alone = { VMDEDUP_HOME: await tempDir(), DATABASE_URL: await createTestDatabase() };
    const kept = path.join(alone.VMDEDUP_HOME, 'kept');
    const gone = path.join(alone.VMDEDUP_HOME, 'gone');
    for (const dir of [kept, gone]) {
      await fs.mkdir(dir);
      await writeData(path.join(dir, 'disk.raw'), MiB, 9);
    }
    await fs.writeFile(path.join(kept, 'kept.xml'), domain('kept', [{ file: 'disk.raw' }]));
    await fs.writeFile(path.join(gone, 'gone.xml'), domain('gone', [{ file: 'disk.raw' }]));
    // 'a-gone' sorts first: a vanished source must not stop the sources after it
    expect((await cli(alone, 'source', 'add', 'a-gone', '--type', 'libvirt', '--path', gone)).code).toBe(0);
    expect((await cli(alone, 'source', 'add', 'b-kept', '--type', 'libvirt', '--path', kept)).code).toBe(0);
    await fs.rm(gone, { recursive: true });
    const result = await cliWithin(alone, 'backup', '--json');
    expect(result.code).toBe(2);
    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups.map((b) => b.vm)).toEqual(['kept']);
    expect(report.problems).toEqual([{ source: 'a-gone', message: expect.stringMatching(/gone: source folder does not exist/) }]);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^vmdedup: source 'a-gone': .*gone: source folder does not exist/)]);
    const listed = JSON.parse((await cli(alone, 'backups', '--json')).stdout) as { backups: { vm: string }[] };
    expect(listed.backups.map((b) => b.vm)).toEqual(['kept']);
    // the live inventory too: one line for the vanished source, the others shown
    const inventory = await cliWithin(alone, 'inventory', '--json');
    expect(inventory.code).toBe(2);
    expect(inventory.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^vmdedup: source 'a-gone': .*source folder does not exist/)]);
    expect((JSON.parse(inventory.stdout) as { sources: { source: string }[] }).sources.map((s) => s.source)).toEqual(['b-kept']);
  });

  it('reads a libvirt disk without <driver type> as raw: a qcow2 header written by a guest pulls in no other disk', async () => {
    const root = await source('attack', 'libvirt', async (dir) => {
      await writeData(path.join(dir, 'victim.raw'), 2 * MiB, 10);
      await fs.writeFile(path.join(dir, 'victim.xml'), domain('victim', [{ file: 'victim.raw' }]));
      // what a guest can write into its own raw disk: a qcow2 header naming the victim's disk as backing file
      await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', path.join(dir, 'victim.raw'), '-F', 'raw', path.join(dir, 'attacker.img'), '2M');
      await fs.writeFile(path.join(dir, 'attacker.xml'), domain('attacker', [{ file: 'attacker.img', type: null }]));
    });
    const { result, report } = await backup('attack');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const attacker = report.backups.find((b) => b.vm === 'attacker')!;
    expect(attacker.disks.map((d) => d.path)).toEqual([path.join(root, 'attacker.img')]);
    const victim = report.backups.find((b) => b.vm === 'victim')!;
    expect(victim.disks.map((d) => d.common)).toEqual([false]);
    const inventory = JSON.parse((await cli(env, 'inventory', '--source', 'attack', '--json')).stdout) as { sources: { vms: { name: string; disks: { format: string; parent?: unknown }[] }[] }[] };
    const attackerDisks = inventory.sources[0].vms.find((vm) => vm.name === 'attacker')!.disks;
    expect(attackerDisks.map((d) => [d.format, d.parent])).toEqual([['raw', undefined]]);
    // and the backup image stores it as raw, with no parent
    const images = await repositoryImageIds(path.join(home, 'repository'));
    const manifests = await Promise.all(images.map(async (id) => (await storedImage(path.join(home, 'repository'), id)).json as { vm: { name: string }; disks: { format: string; parent?: unknown }[] }));
    const stored = manifests.filter((m) => m.vm.name === 'attacker');
    expect(stored).toHaveLength(1);
    expect(stored[0].disks).toEqual([expect.objectContaining({ format: 'raw' })]);
    expect(stored[0].disks[0].parent).toBeUndefined();
  });
});
