/**
 * The savings split (issue 16): what sharing between VMs saved against what incremental reuse saved, on a fleet
 * backed up three times (the third after one VM's private disk changed), checked against figures worked out by
 * hand from the files' sizes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFleet, overwrite } from '../lib/demo/fleet';
import { getSavings } from '../lib/services/reports/get-savings';
import { cli, createTestDatabase, tempDir } from './helpers';

describe('savings: sharing between VMs apart from incremental reuse', () => {
  let env: Record<string, string>;
  let images: string;
  let sql: pg.Pool;

  beforeAll(async () => {
    const home = await tempDir();
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 3, baseMiB: 4, configDiskMiB: 1, privateDiskMiB: 2, vmwareVms: 0 });
    images = path.join(fleet.libvirtDir, 'images');
    env = { VMDEDUP_HOME: path.join(home, 'home'), DATABASE_URL: await createTestDatabase() };
    sql = new pg.Pool({ connectionString: env.DATABASE_URL });
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    for (let run = 0; run < 3; run++) {
      if (run === 2) await overwrite(path.join(images, 'vm01-data.raw'), 0, 65536, 4242);
      const backup = await cli(env, 'backup');
      expect(backup.code, backup.stderr).toBe(0);
    }
  });
  afterAll(() => sql?.end());

  it('counts a shared copy once per other VM, and re-backups of unchanged disks as reuse, as worked out by hand', async () => {
    const size = async (name: string) => (await fs.stat(path.join(images, name))).size;
    const [base, config] = [await size('base-1.qcow2'), await size('site-config.raw')];
    const overlay = [await size('vm01.qcow2'), await size('vm02.qcow2'), await size('vm03.qcow2')];
    const data = [await size('vm01-data.raw'), await size('vm02-data.raw'), await size('vm03-data.raw')];
    // Three VMs share the base and the config disk: one stored copy each where three would be (2 saved, each).
    const sharing = 2 * base + 2 * config;
    // Nine backups name each shared version (three VMs, three runs): six of them a copy the same VM stored before.
    // Each clone's overlay and data disk, backed up three times, twice reused; vm01's data changed before the third
    // run: its first version was reused once, its second not yet.
    const reuse = 6 * base + 6 * config + 2 * (overlay[0] + overlay[1] + overlay[2]) + data[0] + 2 * (data[1] + data[2]);

    const stats = JSON.parse((await cli(env, 'stats', '--json')).stdout) as { savedByCommonDisks: number; savedByReuse: number };
    expect(stats.savedByCommonDisks).toBe(sharing);
    expect(stats.savedByReuse).toBe(reuse);

    const savings = await getSavings(sql);
    expect(savings.totalSaved).toBe(sharing);
    expect(savings.totalReused).toBe(reuse);
    expect(savings.copiesAvoided).toBe(4);
    const disk = (name: string) => savings.byCommonDisk.find((d) => d.path.endsWith(`/${name}`))!;
    expect(disk('base-1.qcow2')).toMatchObject({ copiesAvoided: 2, bytesSaved: 2 * base, bytesReused: 6 * base, vms: ['vm01', 'vm02', 'vm03'] });
    expect(disk('site-config.raw')).toMatchObject({ copiesAvoided: 2, bytesSaved: 2 * config, bytesReused: 6 * config });
    // A private disk is no common disk: it saves by reuse only, and is not listed among them.
    expect(savings.byCommonDisk.map((d) => path.basename(d.path)).sort()).toEqual(['base-1.qcow2', 'site-config.raw']);
    // Per VM: each is credited two thirds of each shared copy, and its own re-backups.
    const vm01 = savings.byVm.find((v) => v.vm === 'vm01')!;
    expect(vm01.backups).toBe(3);
    expect(Math.abs(vm01.bytesSaved - (2 / 3) * (base + config))).toBeLessThanOrEqual(1);
    expect(vm01.bytesReused).toBe(2 * base + 2 * config + 2 * overlay[0] + data[0]);
    expect(savings.byVm.reduce((sum, v) => sum + v.bytesReused, 0)).toBe(reuse);
    expect(Math.abs(savings.byVm.reduce((sum, v) => sum + v.bytesSaved, 0) - sharing)).toBeLessThanOrEqual(3);
  });
});
