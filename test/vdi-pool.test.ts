/**
 * A VDI pool through the CLI: many linked clones on one base and one shared config disk. Their images are written
 * and recorded in batches; one VM of the pool is backed up from its own config alone, knowing who shares its disks
 * from the latest scan, and falls back to a full scan where the catalog cannot vouch for it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, qemuImg, storedImage, tempDir } from './helpers';

type BackupJson = {
  backups: { vm: string; backupId: string; disks: { path: string; common: boolean; action: string; bytesRead: number }[] }[];
  failures: { vm: string; error: string }[];
  problems: { source: string; message: string }[];
};

const CLONES = 40;
const vmName = (i: number) => `desk${String(i).padStart(2, '0')}`;

/** A desktop: its linked clone of the golden image, and the profile disk every desktop shares. */
function desktop(name: string, index: number): string {
  return `<domain type='kvm'><name>${name}</name><uuid>5e1c2a3e-0000-4000-8000-${String(index).padStart(12, '0')}</uuid><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='images/${name}.qcow2'/><target dev='vda'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='images/profile.raw'/><target dev='vdb'/><shareable/></disk>
</devices></domain>
`;
}

describe('a VDI pool (CLI)', () => {
  let env: Record<string, string>;
  let root: string;
  let sql: pg.Pool;

  beforeAll(async () => {
    const home = await tempDir();
    root = path.join(home, 'pool');
    await fs.mkdir(path.join(root, 'images'), { recursive: true });
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(root, 'images', 'golden.qcow2'), '4M');
    await fs.writeFile(path.join(root, 'images', 'profile.raw'), Buffer.alloc(256 * 1024, 7));
    for (let i = 1; i <= CLONES; i++) {
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'golden.qcow2', '-F', 'qcow2', path.join(root, 'images', `${vmName(i)}.qcow2`));
      await fs.writeFile(path.join(root, `${vmName(i)}.xml`), desktop(vmName(i), i));
    }
    const url = await createTestDatabase();
    env = { VMDEDUP_HOME: home, DATABASE_URL: url };
    sql = new pg.Pool({ connectionString: url });
    expect((await cli(env, 'source', 'add', 'pool', '--type', 'libvirt', '--path', root)).code).toBe(0);
  });

  afterAll(async () => {
    await sql?.end();
  });

  it('backs up every clone, each recorded once, the golden image and the profile disk stored once', async () => {
    const result = await cli(env, 'backup', '--json');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups).toHaveLength(CLONES);
    const { rows } = await sql.query<{ images: string; vms: string }>('SELECT count(*) AS images, count(DISTINCT "vmId") AS vms FROM "BackupImage"');
    expect(rows[0]).toEqual({ images: String(CLONES), vms: String(CLONES) });
    const profile = report.backups.flatMap((b) => b.disks.filter((d) => d.path.endsWith('profile.raw')));
    expect(profile.filter((d) => d.action === 'stored')).toHaveLength(1);
    expect(profile.every((d) => d.common)).toBe(true);
    const again = JSON.parse((await cli(env, 'backup', '--json')).stdout) as BackupJson;
    expect(again.backups).toHaveLength(CLONES);
    expect(again.backups.flatMap((b) => b.disks).every((d) => d.action === 'referenced' && d.bytesRead === 0)).toBe(true);
  });

  it('backs up one VM of the pool from its own config: the rest is neither read nor recorded, and its image knows who shares its disks', async () => {
    const full = await imageOf(vmName(7));
    // A broken config elsewhere in the pool: a full scan would record it as a problem of the source.
    await fs.writeFile(path.join(root, `${vmName(3)}.xml`), '<domain><name>broken');
    const result = await cli(env, 'backup', '--vm', vmName(7), '--json');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups.map((b) => b.vm)).toEqual([vmName(7)]);
    const { rows: [source] } = await sql.query<{ problems: unknown[] }>('SELECT "problems" FROM "Source"');
    expect(source.problems).toEqual([]);
    // The same sharing as a full scan gave: every clone uses the golden image and the profile disk.
    const one = await imageOf(vmName(7));
    expect(one.id).not.toBe(full.id);
    const sharing = (image: typeof one) => image.disks.map((d) => [path.basename(d.path), d.common, d.usedByCount ?? d.usedBy.length]);
    expect(sharing(one)).toEqual(sharing(full));
    // An image names the first 32 sharers and counts them all.
    const profile = one.disks.find((d) => d.path.endsWith('profile.raw'))!;
    expect([profile.usedBy.length, profile.usedByCount]).toEqual([32, CLONES]);
    await fs.writeFile(path.join(root, `${vmName(3)}.xml`), desktop(vmName(3), 3));
  });

  it('scans the whole pool when the catalog cannot vouch for the VM: its config moved, or a VM it has not seen', async () => {
    await fs.rename(path.join(root, `${vmName(9)}.xml`), path.join(root, `${vmName(9)}-moved.xml`));
    const moved = await cli(env, 'backup', '--vm', vmName(9), '--json');
    expect(moved.code).toBe(0);
    expect((JSON.parse(moved.stdout) as BackupJson).backups.map((b) => b.vm)).toEqual([vmName(9)]);
    expect((await imageOf(vmName(9))).vm.configPath).toBe(path.join(root, `${vmName(9)}-moved.xml`));

    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'golden.qcow2', '-F', 'qcow2', path.join(root, 'images', 'newdesk.qcow2'));
    await fs.writeFile(path.join(root, 'newdesk.xml'), desktop('newdesk', 999));
    const added = await cli(env, 'backup', '--vm', 'newdesk', '--json');
    expect(added.code).toBe(0);
    expect((await imageOf('newdesk')).disks.find((d) => d.path.endsWith('golden.qcow2'))!.usedByCount).toBe(CLONES + 1);
    // A name no config defines is still the one-line error of a full scan.
    const missing = await cli(env, 'backup', '--vm', 'nosuchdesk');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe("vmdedup: no VM named 'nosuchdesk' in source 'pool' (see 'vmdedup inventory')\n");
  });

  async function imageOf(vm: string): Promise<{ id: string; vm: { configPath: string }; disks: { path: string; common: boolean; usedBy: string[]; usedByCount?: number }[] }> {
    const { rows: [newest] } = await sql.query<{ id: string }>(
      'SELECT b."id" FROM "BackupImage" b JOIN "Vm" v ON v."id" = b."vmId" WHERE v."name" = $1 ORDER BY b."createdAt" DESC, b."id" DESC LIMIT 1', [vm],
    );
    return (await storedImage(path.join(env.VMDEDUP_HOME, 'repository'), newest.id)).json as Awaited<ReturnType<typeof imageOf>>;
  }
});
