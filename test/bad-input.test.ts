/** Every kind of bad input gives one line naming the file, exit 2, and leaves the other VMs backed up. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeData } from '../lib/demo/fleet';
import { cli, createTestDatabase, libvirtDomainXml, qemuImg, repositoryImageIds, tempDir } from './helpers';

const domain = (name: string, disks: { file: string; type?: string }[]) => libvirtDomainXml(name, `00000000-0000-4000-8000-${name.padStart(12, '0').slice(-12)}`, disks);

describe('bad input', () => {
  let home: string;
  let root: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    home = await tempDir();
    root = path.join(home, 'src');
    const outside = path.join(home, 'outside');
    await fs.mkdir(root);
    await fs.mkdir(outside);
    await writeData(path.join(root, 'good.raw'), 2 * 1024 * 1024, 1);
    await writeData(path.join(outside, 'secret.raw'), 1024 * 1024, 2);
    await fs.symlink(path.join(outside, 'secret.raw'), path.join(root, 'escape.raw'));
    await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'loop-b.qcow2', '-F', 'qcow2', path.join(root, 'loop-a.qcow2'), '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'loop-a.qcow2', '-F', 'qcow2', path.join(root, 'loop-b.qcow2'), '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(root, 'whole.qcow2'), '1M');
    const whole = await fs.readFile(path.join(root, 'whole.qcow2'));
    await fs.writeFile(path.join(root, 'truncated.qcow2'), whole.subarray(0, 40));
    await fs.writeFile(path.join(root, 'good.xml'), domain('good', [{ file: 'good.raw' }]));
    await fs.writeFile(path.join(root, 'malformed.xml'), domain('malformed', [{ file: 'good.raw' }]).replace('</devices>', '</devics>'));
    await fs.writeFile(path.join(root, 'outside.xml'), domain('outside', [{ file: path.join(outside, 'secret.raw') }]));
    await fs.writeFile(path.join(root, 'symlink.xml'), domain('symlink', [{ file: 'escape.raw' }]));
    await fs.writeFile(path.join(root, 'missing.xml'), domain('missing', [{ file: 'gone.raw' }]));
    await fs.writeFile(path.join(root, 'loop.xml'), domain('loop', [{ file: 'loop-a.qcow2', type: 'qcow2' }]));
    await fs.writeFile(path.join(root, 'truncated.xml'), domain('truncated', [{ file: 'truncated.qcow2', type: 'qcow2' }]));
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'bad', '--type', 'libvirt', '--path', root)).code).toBe(0);
  });

  it('reports each broken VM in one line naming the file, and still backs up the good one', async () => {
    const result = await cli(env, 'backup', '--json');
    expect(result.code).toBe(2);
    const report = JSON.parse(result.stdout) as { backups: { vm: string }[]; failures: { vm: string; error: string }[] };
    expect(report.backups.map((b) => b.vm)).toEqual(['good']);
    const errors = Object.fromEntries(report.failures.map((f) => [f.vm, f.error]));
    expect(errors.malformed).toMatch(/malformed\.xml: malformed XML at line \d+/);
    expect(errors.outside).toMatch(/secret\.raw: disk path is outside the source root/);
    expect(errors.symlink).toMatch(/escape\.raw: symlink leads outside the source root/);
    expect(errors.missing).toMatch(/gone\.raw: disk file not found/);
    expect(errors.loop).toMatch(/loop-a\.qcow2: parent chain loops: loop-a\.qcow2 -> loop-b\.qcow2 -> loop-a\.qcow2/);
    expect(errors.truncated).toMatch(/truncated\.qcow2: truncated qcow2 header/);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(6);
    for (const line of lines) expect(line).toMatch(/^vmdedup: \w+: \//);

    // nothing recorded for the broken VMs
    const backups = JSON.parse((await cli(env, 'backups', '--json')).stdout) as { backups: { vm: string }[] };
    expect(backups.backups.map((b) => b.vm)).toEqual(['good']);
    const images = await repositoryImageIds(path.join(home, 'repository'));
    expect(images).toHaveLength(1);
  });

  it('refuses a source folder that does not exist, and a bad source type', async () => {
    const missing = await cli(env, 'source', 'add', 'nowhere', '--type', 'libvirt', '--path', path.join(home, 'nope'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^vmdedup: .*nope: source folder does not exist/);
    const badType = await cli(env, 'source', 'add', 'x', '--type', 'hyperv', '--path', root);
    expect(badType.code).toBe(2);
    expect(badType.stderr).toMatch(/source type 'hyperv' is invalid/);
    for (const dir of ['/', '/proc', '/sys/kernel', '/dev']) {
      const system = await cli(env, 'source', 'add', 'sys', '--type', 'libvirt', '--path', dir);
      expect(system.code, dir).toBe(2);
      expect(system.stderr).toMatch(/a source cannot be (the root folder|a system folder)/);
    }
  });

  it('reports malformed .vmx and VMDK files and missing extents', async () => {
    const dc = path.join(home, 'dc');
    await fs.mkdir(path.join(dc, 'ok'), { recursive: true });
    await fs.mkdir(path.join(dc, 'broken'), { recursive: true });
    await fs.mkdir(path.join(dc, 'noextent'), { recursive: true });
    await fs.mkdir(path.join(dc, 'baddesc'), { recursive: true });
    await writeData(path.join(dc, 'ok.raw'), 1024 * 1024, 3);
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', path.join(dc, 'ok.raw'), path.join(dc, 'ok', 'ok.vmdk'));
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', path.join(dc, 'ok.raw'), path.join(dc, 'noextent', 'ne.vmdk'));
    await fs.rm(path.join(dc, 'noextent', 'ne-flat.vmdk'));
    await fs.writeFile(path.join(dc, 'baddesc', 'bd.vmdk'), '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "x-flat.vmdk" 0\n');
    const vmxOf = (name: string, disk: string) => `displayName = "${name}"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "${disk}"\n`;
    await fs.writeFile(path.join(dc, 'ok', 'ok.vmx'), vmxOf('ok', 'ok.vmdk'));
    await fs.writeFile(path.join(dc, 'broken', 'broken.vmx'), 'displayName = "broken"\nthis line is not a setting\n');
    await fs.writeFile(path.join(dc, 'noextent', 'ne.vmx'), vmxOf('noextent', 'ne.vmdk'));
    await fs.writeFile(path.join(dc, 'baddesc', 'bd.vmx'), vmxOf('baddesc', 'bd.vmdk'));
    expect((await cli(env, 'source', 'add', 'dc', '--type', 'vmware', '--path', dc)).code).toBe(0);
    const result = await cli(env, 'backup', '--source', 'dc', '--json');
    expect(result.code).toBe(2);
    const report = JSON.parse(result.stdout) as { backups: { vm: string }[]; failures: { vm: string; error: string }[] };
    expect(report.backups.map((b) => b.vm), JSON.stringify(report.failures)).toEqual(['ok']);
    const errors = Object.fromEntries(report.failures.map((f) => [f.vm, f.error]));
    expect(errors.broken).toMatch(/broken\.vmx: malformed line 2/);
    expect(errors.noextent).toMatch(/ne-flat\.vmdk: disk file not found/);
    expect(errors.baddesc).toMatch(/bd\.vmdk: VMDK descriptor has no valid CID/);
  });
});
