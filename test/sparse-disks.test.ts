/**
 * Holes of sparse disk files are neither read nor hashed: a 20 GiB sparse raw disk holding 100 MiB is backed up
 * reading about 100 MiB, and restores byte for byte (and sparse).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, createTestDatabase, libvirtDomainXml, qemuImg, semiCompressible, tempDir } from './helpers';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

describe('sparse disks', () => {
  let home: string;
  let env: Record<string, string>;
  let disk: string;

  beforeAll(async () => {
    home = await tempDir();
    const fleet = path.join(home, 'fleet');
    await fs.mkdir(path.join(fleet, 'images'), { recursive: true });
    disk = path.join(fleet, 'images/big.raw');
    const handle = await fs.open(disk, 'w');
    try {
      await handle.truncate(20 * GiB);
      // 100 MiB of data in five places, two of them not on a block boundary.
      for (const [at, seed] of [[0, 1], [3 * GiB + 12345, 2], [7 * GiB, 3], [11 * GiB + 512 * 1024, 4], [20 * GiB - 20 * MiB, 5]]) {
        await handle.write(semiCompressible(20 * MiB, seed), 0, 20 * MiB, at);
      }
    } finally {
      await handle.close();
    }
    await fs.writeFile(path.join(fleet, 'big.xml'), libvirtDomainXml('big', '7d1c2a3e-0000-4000-8000-000000000099', [{ file: 'images/big.raw' }]));
    env = { VMDEDUP_HOME: path.join(home, 'vmdedup'), DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'lab', '--type', 'libvirt', '--path', fleet)).code).toBe(0);
  });

  it('reads about the data, not the holes, and restores the same bytes', async () => {
    const result = await cli(env, 'backup', '--json');
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { backups: { disks: { logicalBytes: number; bytesRead: number }[] }[] };
    const [entry] = report.backups[0].disks;
    expect(entry.logicalBytes).toBe(20 * GiB);
    console.log(`sparse 20 GiB raw disk holding 100 MiB: read ${(entry.bytesRead / MiB).toFixed(1)} MiB`);
    // The data, plus at most the partly written blocks around the two unaligned extents.
    expect(entry.bytesRead).toBeGreaterThanOrEqual(100 * MiB);
    expect(entry.bytesRead).toBeLessThanOrEqual(104 * MiB);

    const target = path.join(home, 'restored');
    const restored = await cli(env, 'restore', 'big', '--target', target, '--json');
    expect(restored.code, restored.stderr).toBe(0);
    const copy = path.join(target, 'images/big.raw');
    expect((await fs.stat(copy)).size).toBe(20 * GiB);
    await qemuImg('compare', '-q', '-f', 'raw', '-F', 'raw', copy, disk);
    expect((await fs.stat(copy)).blocks * 512).toBeLessThan(1 * GiB);
  });
});
