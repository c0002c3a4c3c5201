import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers';
import { overwrite, writeData } from '../../demo/fleet';
import type { BlobStore } from '../repository/blob-store';
import { FsBlobStore } from '../repository/fs-blob-store';
import { Repository } from '../repository/repository';
import { scanSource } from '../sources/inventory';
import { backupVms } from './backup';

const MiB = 1024 * 1024;

/** A store wrapper that runs a hook before each put (fault injection without touching the backend). */
function hookedStore(inner: BlobStore, beforePut: (key: string) => Promise<void>): BlobStore {
  return {
    location: inner.location,
    put: async (key, data) => { await beforePut(key); return inner.put(key, data); },
    get: (key) => inner.get(key),
    has: (key) => inner.has(key),
    list: (prefix) => inner.list(prefix),
    delete: (key) => inner.delete(key),
  };
}

async function oneVmSource(sizeMiB: number) {
  const root = await tempDir();
  await writeData(path.join(root, 'disk.raw'), sizeMiB * MiB, 7);
  await fs.writeFile(path.join(root, 'vm.xml'), `<domain><name>vm</name><uuid>u</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='disk.raw'/><target dev='vda'/></disk></devices></domain>`);
  return { root, source: { name: 's', type: 'libvirt' as const, path: root } };
}

async function manifestsAreComplete(repo: Repository): Promise<number> {
  let checked = 0;
  for await (const digest of repo.listStoredDisks()) {
    const manifest = await repo.getStoredDisk(digest);
    for (const file of manifest.files) for (const id of file.blocks) if (id) { expect(await repo.hasChunk(id)).toBe(true); checked++; }
  }
  return checked;
}

describe('backupVms', () => {
  it('re-reads a disk that changed while it was read, and records the final version', async () => {
    const { root, source } = await oneVmSource(8);
    let changes = 0;
    const store = hookedStore(new FsBlobStore(await tempDir()), async (key) => {
      if (key.startsWith('chunks/') && changes === 0) {
        changes++;
        await overwrite(path.join(root, 'disk.raw'), 5 * MiB, 4096, 99);
      }
    });
    const repo = await Repository.openOrInit(store, { blockSize: MiB });
    const results = await backupVms({ inventory: await scanSource(source), repo, lookupStoredDisks: async (disks) => disks.map(() => undefined) });
    expect(results[0].ok).toBe(true);
    const image = (results[0] as Extract<typeof results[0], { ok: true }>).image;
    // the stored content is the disk as it is now
    const after = await scanSource(source);
    expect(image.disks[0].versionToken).toBe(after.disks.get(path.join(root, 'disk.raw'))!.versionToken);
    expect(image.disks[0].bytesRead).toBe(16 * MiB); // read twice
  });

  it('reports a disk that keeps changing and backs up nothing for its VM', async () => {
    const { root, source } = await oneVmSource(4);
    let seed = 0;
    const store = hookedStore(new FsBlobStore(await tempDir()), async (key) => {
      if (key.startsWith('chunks/')) await overwrite(path.join(root, 'disk.raw'), 0, 4096, ++seed);
    });
    const repo = await Repository.openOrInit(store, { blockSize: MiB });
    const results = await backupVms({ inventory: await scanSource(source), repo, lookupStoredDisks: async (disks) => disks.map(() => undefined) });
    expect(results[0]).toMatchObject({ ok: false, error: expect.stringMatching(/disk\.raw: disk changed while it was being read \(3 attempts\)/) });
    const images: string[] = [];
    for await (const id of repo.listBackupImages()) images.push(id);
    expect(images).toEqual([]);
  });

  it('leaves a valid repository when interrupted, and the next run reuses what was written', async () => {
    const { source } = await oneVmSource(24);
    const dir = await tempDir();
    const controller = new AbortController();
    let puts = 0;
    const store = hookedStore(new FsBlobStore(dir), async (key) => {
      if (key.startsWith('chunks/') && ++puts === 6) controller.abort(new Error('stop'));
    });
    const repo = await Repository.openOrInit(store, { blockSize: MiB });
    await expect(backupVms({ inventory: await scanSource(source), repo, lookupStoredDisks: async (disks) => disks.map(() => undefined), signal: controller.signal })).rejects.toThrow();
    await manifestsAreComplete(repo);
    const images: string[] = [];
    for await (const id of repo.listBackupImages()) images.push(id);
    expect(images).toEqual([]);

    const again = await backupVms({ inventory: await scanSource(source), repo, lookupStoredDisks: async (disks) => disks.map(() => undefined) });
    expect(again[0].ok).toBe(true);
    const entry = (again[0] as Extract<typeof again[0], { ok: true }>).image.disks[0];
    expect(entry.bytesRead).toBe(24 * MiB);
    const full = await backupVms({ inventory: await scanSource(source), repo: await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB }), lookupStoredDisks: async (disks) => disks.map(() => undefined) });
    const fullEntry = (full[0] as Extract<typeof full[0], { ok: true }>).image.disks[0];
    expect(entry.bytesWritten).toBeLessThan(fullEntry.bytesWritten); // the interrupted run's chunks were reused
    expect(await manifestsAreComplete(repo)).toBeGreaterThan(0);
  });
});

describe('accounting across VMs', () => {
  it('credits a shared disk read for a VM that then fails to the next VM that records it', async () => {
    const root = await tempDir();
    await writeData(path.join(root, 'shared.raw'), 2 * MiB, 1);
    await writeData(path.join(root, 'a-only.raw'), MiB, 2);
    const disk = (file: string, dev: string) => `<disk type='file' device='disk'><driver type='raw'/><source file='${file}'/><target dev='${dev}'/></disk>`;
    await fs.writeFile(path.join(root, 'a.xml'), `<domain><name>a</name><uuid>a</uuid><devices>${disk('shared.raw', 'vda')}${disk('a-only.raw', 'vdb')}</devices></domain>`);
    await fs.writeFile(path.join(root, 'b.xml'), `<domain><name>b</name><uuid>b</uuid><devices>${disk('shared.raw', 'vda')}</devices></domain>`);
    const inventory = await scanSource({ name: 's', type: 'libvirt', path: root });
    await fs.rm(path.join(root, 'a-only.raw')); // gone between scan and read: VM a fails after its shared disk was stored
    const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB });
    const results = await backupVms({ inventory, repo, lookupStoredDisks: async (disks) => disks.map(() => undefined) });
    expect(results.map((r) => [r.vm, r.ok])).toEqual([['a', false], ['b', true]]);
    const shared = (results[1] as Extract<typeof results[1], { ok: true }>).image.disks[0];
    expect(shared).toMatchObject({ action: 'stored', bytesRead: 2 * MiB });
    expect(shared.bytesWritten).toBeGreaterThan(0);
  });
});
