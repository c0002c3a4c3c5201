/**
 * `backup --vm` of one VM of a pool where the latest full scan refused what the one-VM path would back up: it must
 * refuse the same (or scan in full), never back up a VM the full scan would not.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, qemuImg, tempDir } from './helpers';

type BackupJson = {
  backups: { vm: string; backupId: string; disks: { path: string; identifier: string }[] }[];
  failures: { vm: string; error: string; configPath: string }[];
  problems: { source: string; message: string }[];
};

function desktop(name: string, index: number, disk = `images/${name}.qcow2`, serial = ''): string {
  return `<domain type='kvm'><name>${name}</name><uuid>5e1c2a3e-0000-4000-8000-${String(index).padStart(12, '0')}</uuid><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disk}'/><target dev='vda'/>${serial ? `<serial>${serial}</serial>` : ''}</disk>
</devices></domain>
`;
}

describe('backup --vm where the latest scan refused the VM', () => {
  let env: Record<string, string>;
  let root: string;

  beforeEach(async () => {
    const home = await tempDir();
    root = path.join(home, 'pool');
    await fs.mkdir(path.join(root, 'images'), { recursive: true });
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(root, 'images', 'golden.qcow2'), '1M');
    for (const name of ['desk01', 'desk02', 'desk03', 'desk03-copy']) {
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'golden.qcow2', '-F', 'qcow2', path.join(root, 'images', `${name}.qcow2`));
    }
    for (const i of [1, 2, 3]) await fs.writeFile(path.join(root, `desk0${i}.xml`), desktop(`desk0${i}`, i));
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'pool', '--type', 'libvirt', '--path', root)).code).toBe(0);
  });

  it('a copied config defining the same VM (name and UUID): the full scan refuses both, and so does --vm (not the copy under its name)', async () => {
    // The copy sorts first: the catalog's one row for the name points at the copy's config, with the copy's disk.
    await fs.writeFile(path.join(root, 'desk03-copy.xml'), desktop('desk03', 3, 'images/desk03-copy.qcow2'));
    const full = JSON.parse((await cli(env, 'backup', '--json')).stdout) as BackupJson;
    expect(full.backups.map((b) => b.vm).sort()).toEqual(['desk01', 'desk02']);
    expect(full.failures.filter((f) => f.vm === 'desk03').map((f) => f.error)).toEqual([expect.stringContaining('an ambiguous identity'), expect.stringContaining('an ambiguous identity')]);

    const one = await cli(env, 'backup', '--vm', 'desk03', '--json');
    const report = JSON.parse(one.stdout) as BackupJson;
    expect(report.backups).toEqual([]);
    expect(report.failures.map((f) => f.error)).toEqual([expect.stringContaining('an ambiguous identity'), expect.stringContaining('an ambiguous identity')]);
    expect(one.code).not.toBe(0);
  });

  it('a config made to carry another VM\'s UUID since the latest scan: refused, as the full scan refuses it', async () => {
    expect((await cli(env, 'backup', '--json')).code).toBe(0);
    // desk03's config now says desk02's UUID (a config copied from desk02's and renamed, pointing at desk02's disk).
    await fs.writeFile(path.join(root, 'desk03.xml'), desktop('desk03', 2, 'images/desk02.qcow2'));
    const one = await cli(env, 'backup', '--vm', 'desk03', '--json');
    const report = JSON.parse(one.stdout) as BackupJson;
    expect(report.backups).toEqual([]);
    expect(report.failures.map((f) => f.error)).toEqual([expect.stringContaining('UUID 5e1c2a3e-0000-4000-8000-000000000002 is also used by')]);
  });

  it('a disk serial two configs give (ambiguous at the latest scan): --vm reports it and keeps the disk under its path, as the full scan does', async () => {
    for (const i of [1, 2]) await fs.writeFile(path.join(root, `desk0${i}.xml`), desktop(`desk0${i}`, i, `images/desk0${i}.qcow2`, 'SAME-SERIAL'));
    const full = await cli(env, 'backup', '--json');
    expect(full.code).toBe(2);
    const identifierOf = (report: BackupJson, vm: string) => report.backups.find((b) => b.vm === vm)!.disks[0].identifier;
    expect(identifierOf(JSON.parse(full.stdout) as BackupJson, 'desk01')).toBe('path:images/desk01.qcow2');

    const one = await cli(env, 'backup', '--vm', 'desk01', '--json');
    const report = JSON.parse(one.stdout) as BackupJson;
    expect(report.problems.map((p) => p.message)).toEqual([expect.stringContaining('identifier serial:SAME-SERIAL is given to 2 disk files')]);
    expect(identifierOf(report, 'desk01')).toBe('path:images/desk01.qcow2');
    expect(one.code).toBe(2);
  });
});
