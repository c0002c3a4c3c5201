import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { manifestsAreComplete, readStoredBlock, storedDiskDigests, tempDir } from '../../../test/helpers';
import { overwrite, writeData } from '../../demo/fleet';
import { BlockPool } from '../chunking/block-pool';
import { RunFault } from '../errors';
import type { BlobStore } from '../repository/blob-store';
import { type Fault, FaultyBlobStore, hookedStore } from '../repository/faulty-blob-store';
import { FsBlobStore } from '../repository/fs-blob-store';
import { type ChunkId, chunkKey } from '../repository/chunk-id';
import type { BackupImageManifest } from '../repository/manifests';
import { PACK_FORMAT_VERSION, Repository, storedDiskKey } from '../repository/repository';
import { decodeImagePack, imagePackKey, parseImagesKey, parsePackedImageId } from '../repository/image-pack';
import { scanSource } from '../sources/inventory';
import { type VmBackupResult, backupVms } from './backup';

const MiB = 1024 * 1024;

async function oneVmSource(sizeMiB: number) {
  const root = await tempDir();
  await writeData(path.join(root, 'disk.raw'), sizeMiB * MiB, 7);
  await fs.writeFile(path.join(root, 'vm.xml'), `<domain><name>vm</name><uuid>u</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='disk.raw'/><target dev='vda'/></disk></devices></domain>`);
  return { root, source: { name: 's', type: 'libvirt' as const, path: root } };
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
    // Written twice too, where the disk changed: every chunk file in the (fresh) repository is counted.
    let chunkBytes = 0;
    for await (const page of store.list('chunks/')) for (const key of page) chunkBytes += (await store.get(key)).length;
    expect(image.disks[0].bytesWritten).toBe(chunkBytes);
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
    expect(await repo.backupImageIds()).toEqual([]);
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
    expect(await repo.backupImageIds()).toEqual([]);

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

/** Three VMs, each with its own 3 MiB disk (3 chunks of 1 MiB each, none shared). */
async function threeVmSource() {
  const root = await tempDir();
  for (const [index, name] of ['vm1', 'vm2', 'vm3'].entries()) {
    await writeData(path.join(root, `${name}.raw`), 3 * MiB, 100 + index);
    await fs.writeFile(path.join(root, `${name}.xml`), `<domain><name>${name}</name><uuid>${name}</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='${name}.raw'/><target dev='vda'/></disk></devices></domain>`);
  }
  return scanSource({ name: 's', type: 'libvirt', path: root });
}

async function faultyRepo(faults: Fault[]) {
  const store = new FaultyBlobStore(new FsBlobStore(await tempDir()), { faults });
  return { store, repo: await Repository.openOrInit(store, { blockSize: MiB }) };
}

async function imagesIn(repo: Repository): Promise<string[]> {
  return repo.backupImageIds();
}

const none = async (disks: unknown[]) => disks.map(() => undefined);
const summary = (results: VmBackupResult[]) => results.map((r) => (r.ok ? [r.vm, 'saved'] : [r.vm, r.stoppedRun ? 'stopped the run' : r.attempted === false ? 'not backed up' : 'failed']));

// One VM after another (storeAhead 0): each fault lands on the VM the test names. With small disks stored ahead
// (the default), a fault lands on whichever write meets it; the test after this block checks what still holds then.
describe('backupVms under repository faults', () => {
  it('a full disk fails the VM it hits with one line naming the repository, stops the run, and keeps what was saved', async () => {
    // The 4th chunk is vm2's first: the disk is full from there on.
    const { store, repo } = await faultyRepo([{ op: 'put', keyPrefix: 'chunks/', call: 4, error: 'ENOSPC', persistent: true }]);
    const recorded: BackupImageManifest[] = [];
    const results = await backupVms({ inventory: await threeVmSource(), repo, lookupStoredDisks: none, storeAhead: 0, onImages: async (images) => { recorded.push(...images); } });
    expect(summary(results)).toEqual([['vm1', 'saved'], ['vm2', 'stopped the run'], ['vm3', 'not backed up']]);
    expect(results[1]).toMatchObject({ error: `repository ${store.location}: no space left on device (ENOSPC)` });
    expect(results[2]).toMatchObject({ attempted: false, error: `not backed up: the run stopped at vm2 (repository ${store.location}: no space left on device (ENOSPC))` });
    // Nothing recorded that the repository lacks; what is recorded restores (every chunk it names is there).
    expect(recorded.map((image) => image.vm.name)).toEqual(['vm1']);
    expect(await imagesIn(repo)).toEqual([recorded[0].id]);
    await manifestsAreComplete(repo);
    // vm3 was not even read: no chunk put was tried after the fault but the in-flight ones of vm2.
    expect(store.injected.every((fault) => fault.key.startsWith('chunks/'))).toBe(true);
  });

  it('an I/O error writing a backup image fails that VM only as far as the repository goes, and nothing is recorded for it', async () => {
    const { repo, store } = await faultyRepo([{ op: 'put', keyPrefix: 'images/', call: 2, error: 'EIO' }]);
    const recorded: string[] = [];
    const results = await backupVms({ inventory: await threeVmSource(), repo, lookupStoredDisks: none, storeAhead: 0, onImages: async (images) => { recorded.push(...images.map((image) => image.vm.name)); } });
    expect(results[1]).toMatchObject({ ok: false, stoppedRun: true, error: `repository ${store.location}: input/output error (EIO)` });
    // vm3's disks may have been read while vm2's image was written; its image is not written after the stop.
    expect(results[2]).toMatchObject({ ok: false, attempted: false });
    expect(recorded).toEqual(['vm1']);
    expect((await imagesIn(repo)).length).toBe(1);
  });

  it('a failing durability barrier (fsync) stops the run before a manifest names chunks that may not survive', async () => {
    // flush 1 is openOrInit's; flush 2 comes before vm1's stored-disk manifest.
    const { repo } = await faultyRepo([{ op: 'flush', call: 2, error: 'EIO' }]);
    const results = await backupVms({ inventory: await threeVmSource(), repo, lookupStoredDisks: none, storeAhead: 0 });
    expect(summary(results)).toEqual([['vm1', 'stopped the run'], ['vm2', 'not backed up'], ['vm3', 'not backed up']]);
    expect(await storedDiskDigests(repo)).toEqual([]);
    expect(await imagesIn(repo)).toEqual([]);
  });

  it('a lost catalog fails the VM being recorded (its image stays in the repository) and stops the run', async () => {
    const { repo } = await faultyRepo([]);
    let calls = 0;
    const results = await backupVms({
      inventory: await threeVmSource(), repo, lookupStoredDisks: none, storeAhead: 0,
      onImages: async () => { if (++calls === 2) throw new RunFault('catalog connection lost (connect ECONNREFUSED 127.0.0.1:5432)'); },
    });
    expect(summary(results)).toEqual([['vm1', 'saved'], ['vm2', 'stopped the run'], ['vm3', 'not backed up']]);
    const vm2 = results[1] as Extract<VmBackupResult, { ok: false }>;
    expect(vm2.error).toBe('catalog connection lost (connect ECONNREFUSED 127.0.0.1:5432)');
    expect(await imagesIn(repo)).toContain(vm2.backupId);
  });

  it('a catalog error that is not a lost connection fails only its VM; the run goes on', async () => {
    const { repo } = await faultyRepo([]);
    let calls = 0;
    const results = await backupVms({
      inventory: await threeVmSource(), repo, lookupStoredDisks: none, storeAhead: 0,
      onImages: async () => { if (++calls === 2) throw new Error('duplicate key value violates unique constraint "Vm_sourceId_name_key"'); },
    });
    expect(summary(results)).toEqual([['vm1', 'saved'], ['vm2', 'failed'], ['vm3', 'saved']]);
    expect(results[1]).toMatchObject({ backupId: expect.any(String) });
  });

  it('makes chunks durable before the stored-disk manifest that names them, and the image durable before the catalog records it', async () => {
    // A store that knows what is durable: what had been put when a flush began, once that flush is done.
    const inner = new FsBlobStore(await tempDir());
    const stored = new Set<string>();
    const durable = new Set<string>();
    const violations: string[] = [];
    const store: BlobStore = {
      location: inner.location,
      put: async (key, data) => {
        if (key.startsWith('disks/')) {
          const manifest = JSON.parse(Buffer.from(data).toString()) as { files: { blocks: (string | null)[] }[] };
          for (const id of manifest.files.flatMap((file) => file.blocks)) if (id && !durable.has(chunkKey(id as ChunkId))) violations.push(`${key} names ${id} before it is durable`);
        }
        const pack = parseImagesKey(key);
        if (pack && 'pack' in pack) {
          for (const image of decodeImagePack(data, pack.pack.packId, pack.pack.count, key, PACK_FORMAT_VERSION) as BackupImageManifest[]) {
            for (const disk of image.disks) if (!durable.has(storedDiskKey(disk.digest))) violations.push(`${key} names stored disk ${disk.digest} before it is durable`);
          }
        }
        await inner.put(key, data);
        stored.add(key);
      },
      flush: async () => {
        const before = [...stored];
        await inner.flush();
        for (const key of before) durable.add(key);
      },
      get: (key) => inner.get(key), has: (key) => inner.has(key), size: (key) => inner.size(key), delete: (key) => inner.delete(key), list: (prefix) => inner.list(prefix),
    };
    const repo = await Repository.openOrInit(store, { blockSize: MiB });
    let recorded = 0;
    await backupVms({
      inventory: await threeVmSource(), repo, lookupStoredDisks: none, storeAhead: 0,
      onImages: async (images) => {
        for (const image of images) {
          recorded++;
          const packKey = imagePackKey(parsePackedImageId(image.id)!.packId, images.length);
          if (!durable.has(packKey)) violations.push(`image ${image.id} recorded before ${packKey} is durable`);
        }
      },
    });
    expect(recorded).toBe(3);
    expect(violations).toEqual([]);
  });

  it('a torn write the store does not report is caught by the read that verifies', async () => {
    const { repo } = await faultyRepo([{ op: 'put', keyPrefix: 'chunks/', call: 2, error: 'short-write' }]);
    const results = await backupVms({ inventory: await threeVmSource(), repo, lookupStoredDisks: none, storeAhead: 0 });
    expect(results.every((r) => r.ok)).toBe(true); // the store said yes
    const digest = (results[0] as Extract<VmBackupResult, { ok: true }>).image.disks[0].digest;
    const manifest = await repo.getStoredDisk(digest);
    const { blockSize, files: [file] } = manifest;
    const pool = new BlockPool({ ids: repo.ids, blockSize, forRestore: true, threads: 1 });
    const reads = await Promise.allSettled(file.blocks.map((id, i) => readStoredBlock(repo, pool, id!, Math.min(blockSize, file.size - i * blockSize))))
      .finally(() => pool.close());
    expect(reads.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([expect.stringMatching(/chunk [0-9a-f]{12} is corrupt/)]);
  });
});

/** `count` VMs that all use one shared disk only: the first reads it, the others read nothing. */
async function poolSource(count: number) {
  const root = await tempDir();
  await writeData(path.join(root, 'base.raw'), MiB, 7);
  for (let i = 1; i <= count; i++) {
    await fs.writeFile(path.join(root, `vm${i}.xml`), `<domain><name>vm${i}</name><uuid>u${i}</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='base.raw'/><target dev='vda'/><shareable/></disk></devices></domain>`);
  }
  return scanSource({ name: 's', type: 'libvirt', path: root });
}

describe('backupVms with small disks stored ahead (the default) under repository faults', () => {
  it('whichever write a full disk meets: VMs before the stop saved and complete, the stop VM failed, the rest not backed up, nothing else in the repository (seeded)', async () => {
    for (let call = 1; call <= 9; call++) {
      const { store, repo } = await faultyRepo([{ op: 'put', keyPrefix: call % 3 === 0 ? 'disks/' : 'chunks/', call: call % 3 === 0 ? call / 3 : call, error: 'ENOSPC', persistent: true }]);
      const recorded: BackupImageManifest[] = [];
      const results = await backupVms({ inventory: await threeVmSource(), repo, lookupStoredDisks: none, onImages: async (images) => { recorded.push(...images); } });
      const states = summary(results).map(([, state]) => state);
      const stopAt = states.indexOf('stopped the run');
      expect(stopAt, `fault at ${call}: ${states.join(', ')}`).toBeGreaterThanOrEqual(0);
      expect(states.slice(0, stopAt).every((state) => state === 'saved')).toBe(true);
      expect(states.slice(stopAt + 1).every((state) => state === 'not backed up')).toBe(true);
      expect(results[stopAt]).toMatchObject({ error: `repository ${store.location}: no space left on device (ENOSPC)` });
      // What is recorded is what the repository holds, and restores; nothing of a VM after the stop is named.
      expect(recorded.map((image) => image.vm.name)).toEqual(results.slice(0, stopAt).map((r) => r.vm));
      expect((await imagesIn(repo)).sort()).toEqual(recorded.map((image) => image.id).sort());
      await manifestsAreComplete(repo);
      expect(await store.sweepTemporaryFiles?.()).toEqual({ removed: 0, kept: 0 });
    }
  });
});

describe('backupVms records the images of VMs that read nothing in batches', () => {
  it('writes and records them together, durable first, and an image the catalog refuses fails only its VM', async () => {
    const { repo } = await faultyRepo([]);
    const batches: string[][] = [];
    const results = await backupVms({
      inventory: await poolSource(5), repo, lookupStoredDisks: none,
      onImages: async (images) => {
        for (const image of images) await repo.getBackupImage(image.id); // written before they are recorded
        batches.push(images.map((image) => image.vm.name));
        return images.map((image) => (image.vm.name === 'vm3' ? new Error('refused by the catalog: value out of range') : undefined));
      },
    });
    // vm1 reads the shared disk; vm2-vm5 read nothing: one batch of five, one barrier pair for all.
    expect(batches).toEqual([['vm1', 'vm2', 'vm3', 'vm4', 'vm5']]);
    expect(summary(results)).toEqual([['vm1', 'saved'], ['vm2', 'saved'], ['vm3', 'failed'], ['vm4', 'saved'], ['vm5', 'saved']]);
    expect(results[2]).toMatchObject({ error: 'refused by the catalog: value out of range', backupId: expect.any(String) });
    expect((await imagesIn(repo)).length).toBe(5);
  });

  it('a lost catalog fails every VM of the batch (their images stay in the repository) and stops the run', async () => {
    const { repo } = await faultyRepo([]);
    const results = await backupVms({
      inventory: await poolSource(4), repo, lookupStoredDisks: none,
      onImages: async () => { throw new RunFault('catalog connection lost (connect ECONNREFUSED 127.0.0.1:5432)'); },
    });
    expect(summary(results)).toEqual([['vm1', 'stopped the run'], ['vm2', 'failed'], ['vm3', 'failed'], ['vm4', 'failed']]);
    const ids = results.map((r) => (r as Extract<VmBackupResult, { ok: false }>).backupId);
    expect(await imagesIn(repo)).toEqual([...ids].sort());
  });

  it('an I/O error writing a batch (its pack) records none of its images and stops the run', async () => {
    const { repo, store } = await faultyRepo([{ op: 'put', keyPrefix: 'images/', call: 1, error: 'EIO' }]);
    let recorded = 0;
    const results = await backupVms({ inventory: await poolSource(4), repo, lookupStoredDisks: none, onImages: async (images) => { recorded += images.length; } });
    expect(recorded).toBe(0);
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(results[0]).toMatchObject({ stoppedRun: true, error: `repository ${store.location}: input/output error (EIO)` });
  });
});
