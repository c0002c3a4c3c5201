/**
 * The CLI end to end on fleets made by qemu-img: common disks stored once, fast path, changed blocks,
 * catalog rebuild, JSON contract and exit codes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildFleet, overwrite, type Fleet } from '../lib/demo/fleet';
import { cli, createTestDatabase, tempDir } from './helpers';

type BackupJson = {
  backups: { vm: string; backupId: string; disks: { path: string; identifier: string; common: boolean; action: 'stored' | 'referenced'; logicalBytes: number; bytesRead: number; bytesWritten: number }[] }[];
  failures: { vm: string; error: string }[];
  totals: { logicalBytes: number; bytesRead: number; bytesWritten: number };
};

async function countChunks(repo: string): Promise<number> {
  const entries = await fs.readdir(path.join(repo, 'chunks'), { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).length;
}

describe('vmdedup backup (CLI)', () => {
  let env: Record<string, string>;
  let fleet: Fleet;
  let home: string;

  beforeAll(async () => {
    home = await tempDir();
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 3, baseMiB: 8, configDiskMiB: 2, privateDiskMiB: 3, vmwareVms: 2, vmwareBaseMiB: 4 });
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(env, 'source', 'add', 'esx', '--type', 'vmware', '--path', fleet.vmwareDir!)).code).toBe(0);
  });

  it('shows the live inventory: pointers, parent chains and shared disks', async () => {
    const result = await cli(env, 'inventory', '--source', 'kvm', '--json');
    expect(result.code).toBe(0);
    const inventory = JSON.parse(result.stdout) as { sources: { vms: { name: string; disks: { path: string; via: string; slot?: string; target?: string; parent?: { pointer: string }; usedBy: string[]; common: boolean }[]; slots: { device: string; backedUp: boolean }[] }[] }[] };
    const vm01 = inventory.sources[0].vms.find((vm) => vm.name === 'vm01')!;
    expect(vm01.disks.map((d) => [path.basename(d.path), d.via, d.slot ?? null])).toEqual([
      ['vm01.qcow2', 'attached', 'vda'], ['base-1.qcow2', 'parent', null], ['site-config.raw', 'attached', 'vdb'], ['vm01-data.raw', 'attached', 'vdc'],
    ]);
    expect(vm01.disks[0]).toMatchObject({ target: 'images/vm01.qcow2', parent: { pointer: 'base-1.qcow2' }, common: false });
    expect(vm01.disks[1]).toMatchObject({ usedBy: ['vm01', 'vm02', 'vm03'], common: true });
    expect(vm01.slots.filter((s) => !s.backedUp).map((s) => s.device)).toEqual(['cdrom']);
  });

  it('stores each common disk once and references it from the other VMs with 0 bytes read', async () => {
    const result = await cli(env, 'backup', '--json');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as BackupJson;
    expect(report.backups.map((b) => b.vm).sort()).toEqual(['app1', 'app2', 'vm01', 'vm02', 'vm03']);

    const config = report.backups.flatMap((b) => b.disks.filter((d) => d.path.endsWith('site-config.raw')));
    expect(config).toHaveLength(3);
    expect(config.every((d) => d.common)).toBe(true);
    expect(config.filter((d) => d.action === 'stored')).toHaveLength(1);
    for (const ref of config.filter((d) => d.action === 'referenced')) {
      expect(ref.bytesRead).toBe(0);
      expect(ref.bytesWritten).toBe(0);
    }
    // The qcow2 base is a disk of each clone VM through its parent chain, and common to all three.
    const base = report.backups.flatMap((b) => b.disks.filter((d) => d.path.endsWith('base-1.qcow2')));
    expect(base).toHaveLength(3);
    expect(base.filter((d) => d.action === 'stored')).toHaveLength(1);
    expect(base.filter((d) => d.bytesRead > 0)).toHaveLength(1);
    // VMware: the sparse gold image (parent of both apps) and the multi-writer disk (by its ddb.uuid).
    const quorum = report.backups.flatMap((b) => b.disks.filter((d) => d.path.endsWith('quorum.vmdk')));
    expect(quorum.map((d) => d.identifier)).toEqual(['vmdk-uuid:6000c29a112233445566778899aabbcc', 'vmdk-uuid:6000c29a112233445566778899aabbcc']);
    expect(quorum.map((d) => d.action).sort()).toEqual(['referenced', 'stored']);
    const gold = report.backups.flatMap((b) => b.disks.filter((d) => d.path.endsWith('gold.vmdk')));
    expect(gold.every((d) => d.common)).toBe(true);
    // Private disks are not common.
    const privateDisks = report.backups.flatMap((b) => b.disks.filter((d) => d.path.endsWith('-data.raw')));
    expect(privateDisks).toHaveLength(3);
    expect(privateDisks.every((d) => !d.common && d.action === 'stored')).toBe(true);
    // path: as the config names it, made absolute
    expect(report.backups.find((b) => b.vm === 'vm01')!.disks[0].path).toBe(path.join(fleet.libvirtDir, 'images', 'vm01.qcow2'));
    expect(report.totals.bytesRead).toBe(report.backups.flatMap((b) => b.disks).reduce((s, d) => s + d.bytesRead, 0));

    const common = JSON.parse((await cli(env, 'common-disks', '--json')).stdout) as { commonDisks: { path: string; vms: string[]; copiesStored: number; storedBytes: number; logicalBytes: number }[] };
    const configDisk = common.commonDisks.find((d) => d.path.endsWith('site-config.raw'))!;
    expect(configDisk.vms).toEqual(['vm01', 'vm02', 'vm03']);
    expect(configDisk.copiesStored).toBe(1);
    expect(configDisk.logicalBytes).toBe(2 * 1024 * 1024);
    expect(configDisk.storedBytes).toBeGreaterThan(0);
    expect(configDisk.storedBytes).toBeLessThan(configDisk.logicalBytes);
    expect(common.commonDisks.find((d) => d.path.endsWith('gold.vmdk'))!.vms).toEqual(['app1', 'app2']);
  });

  it('re-backs up an unchanged fleet reading 0 bytes', async () => {
    const report = JSON.parse((await cli(env, 'backup', '--json')).stdout) as BackupJson;
    expect(report.backups).toHaveLength(5);
    expect(report.totals.bytesRead).toBe(0);
    expect(report.totals.bytesWritten).toBe(0);
    expect(report.backups.flatMap((b) => b.disks).every((d) => d.action === 'referenced')).toBe(true);
  });

  it('writes only the changed block after one block of a disk changes', async () => {
    const repo = path.join(home, 'repository');
    const before = await countChunks(repo);
    const data = path.join(fleet.libvirtDir, 'images', 'vm02-data.raw');
    await overwrite(data, 1024 * 1024 + 4096, 512, 42);
    const report = JSON.parse((await cli(env, 'backup', '--vm', 'vm02', '--json')).stdout) as BackupJson;
    expect(report.backups).toHaveLength(1);
    const changed = report.backups[0].disks.find((d) => d.path === data)!;
    expect(changed.action).toBe('stored');
    expect(changed.bytesRead).toBe(3 * 1024 * 1024);
    expect(changed.bytesWritten).toBeGreaterThan(0);
    expect(changed.bytesWritten).toBeLessThanOrEqual(1024 * 1024 + 1);
    expect(report.backups[0].disks.filter((d) => d !== changed).every((d) => d.bytesRead === 0)).toBe(true);
    expect(await countChunks(repo)).toBe(before + 1);
  });

  it('rebuilds the catalog from the repository alone', async () => {
    const snapshot = async (e: Record<string, string>) => ({
      backups: JSON.parse((await cli(e, 'backups', '--json')).stdout),
      common: JSON.parse((await cli(e, 'common-disks', '--json')).stdout),
      stats: JSON.parse((await cli(e, 'stats', '--json')).stdout),
    });
    // Protection survives the rebuild (it is kept in the repository too); one taken back stays taken back.
    const ids = (JSON.parse((await cli(env, 'backups', '--json')).stdout) as { backups: { backupId: string }[] }).backups.map((b) => b.backupId);
    for (const [verb, id] of [['protect', ids[0]], ['protect', ids[1]], ['unprotect', ids[1]]]) expect((await cli(env, 'backups', verb, id)).code).toBe(0);
    expect((await cli(env, 'backups', 'protect', 'no-such-id')).stderr).toMatch(/no backup image 'no-such-id'/);
    const original = await snapshot(env);
    expect((original.backups.backups as { backupId: string; protected: boolean }[]).filter((b) => b.protected).map((b) => b.backupId)).toEqual([ids[0]]);
    const fresh = { ...env, DATABASE_URL: await createTestDatabase() };
    const rebuilt = await cli(fresh, 'catalog', 'rebuild');
    expect(rebuilt.code).toBe(0);
    expect(rebuilt.stdout).toMatch(/11 backup images, 2 sources/);
    const copy = await snapshot(fresh);
    expect(copy.backups).toEqual(original.backups);
    expect(copy.common).toEqual(original.common);
    expect({ ...copy.stats, sources: 0 }).toEqual({ ...original.stats, sources: 0 });
    // and the rebuilt catalog serves the fast path: nothing is read again
    const again = JSON.parse((await cli(fresh, 'backup', '--json')).stdout) as BackupJson;
    expect(again.totals.bytesRead).toBe(0);
  });

  it('lists backups per VM and refuses unknown names with exit 2', async () => {
    const backups = JSON.parse((await cli(env, 'backups', '--vm', 'vm02', '--json')).stdout) as { backups: { vm: string }[] };
    expect(backups.backups.length).toBe(3); // first, unchanged and changed-block runs (the rebuild test backed up into another catalog)
    expect(backups.backups.every((b) => b.vm === 'vm02')).toBe(true);
    const unknown = await cli(env, 'backup', '--vm', 'nope', '--json');
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toMatch(/no VM named 'nope'/);
    const badOption = await cli(env, 'backup', '--frobnicate');
    expect(badOption.code).toBe(2);
    const dup = await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/already exists/);
  });
});
