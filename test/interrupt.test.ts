/** Ctrl-C during a backup: exit 130, a valid repository, and the next run reuses what was written. */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { writeData } from '../lib/demo/fleet';
import { cli, createTestDatabase, projectRoot, tempDir } from './helpers';

it('stops on SIGINT with exit 130 and keeps what was stored', async () => {
  const home = await tempDir();
  const src = path.join(home, 'src');
  await fs.mkdir(src);
  await writeData(path.join(src, 'big.raw'), 256 * 1024 * 1024, 5);
  await fs.writeFile(path.join(src, 'vm.xml'), `<domain><name>vm</name><uuid>u</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='big.raw'/><target dev='vda'/></disk></devices></domain>`);
  const env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
  expect((await cli(env, 'source', 'add', 's', '--type', 'libvirt', '--path', src)).code).toBe(0);

  const child = spawn(process.execPath, [path.join(projectRoot, 'bin', 'vmdedup.mjs'), 'backup'], { env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Interrupt as soon as the first blocks are in the repository.
  const chunks = path.join(home, 'repository', 'chunks');
  for (let i = 0; i < 1000; i++) {
    const shards = await fs.readdir(chunks).catch(() => []);
    if (shards.length > 2) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  child.kill('SIGINT');
  expect(await exited).toBe(130);
  expect(stderr).toMatch(/interrupted/);
  await expect(fs.readdir(path.join(home, 'repository', 'images'))).rejects.toThrow(); // no image: the VM was not finished

  const keptChunks = (await fs.readdir(chunks, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).length;
  expect(keptChunks).toBeGreaterThan(0);

  const again = JSON.parse((await cli(env, 'backup', '--json')).stdout) as { backups: { disks: { bytesRead: number; bytesWritten: number; logicalBytes: number }[] }[] };
  const disk = again.backups[0].disks[0];
  expect(disk.bytesRead).toBe(disk.logicalBytes);
  // Every block is in the repository now, but the second run wrote only those the interrupted run had not.
  let storedBytes = 0;
  for (const entry of await fs.readdir(chunks, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) storedBytes += (await fs.stat(path.join(entry.parentPath, entry.name))).size;
  }
  expect(disk.bytesWritten).toBeGreaterThan(0);
  expect(disk.bytesWritten).toBeLessThan(storedBytes);
});
