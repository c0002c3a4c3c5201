/**
 * Small disks of the next VMs are stored while the current VM's image is built (backupVms' storeAhead): stores of
 * several disks run at once. What a run says and keeps must be what it says and keeps one VM after another: no
 * manifest names a chunk another store was still putting (and then failed to), each chunk and stored disk is
 * written and credited once, to the first VM in order, and nothing runs once backupVms has returned.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { manifestsAreComplete, semiCompressible, tempDir } from '../../../test/helpers';
import { writeData } from '../../demo/fleet';
import { fsError, hookedStore } from '../repository/faulty-blob-store';
import { FsBlobStore } from '../repository/fs-blob-store';
import { Repository } from '../repository/repository';
import { scanSource } from '../sources/inventory';
import { type VmBackupResult, backupVms } from './backup';

const MiB = 1024 * 1024;
const none = async (disks: unknown[]) => disks.map(() => undefined);

/** VMs v0, v1, … each with its own 2 MiB disk file; `same`: all of one content (clones of one template). */
async function source(count: number, options: { same: boolean; mib?: number }) {
  const root = await tempDir();
  for (let i = 0; i < count; i++) {
    await writeData(path.join(root, `v${i}.raw`), (options.mib ?? 2) * MiB, options.same ? 5 : 10 + i);
    await fs.writeFile(path.join(root, `v${i}.xml`), `<domain><name>v${i}</name><uuid>v${i}</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='v${i}.raw'/><target dev='vda'/></disk></devices></domain>`);
  }
  return scanSource({ name: 's', type: 'libvirt', path: root });
}

const entries = (results: VmBackupResult[]) => results.map((r) => (r.ok ? r.image.disks.map((d) => [r.vm, d.digest, d.action, d.bytesRead, d.bytesWritten]) : [r.vm, 'failed']));

describe('backupVms storing small disks ahead', () => {
  it('an earlier VM waits for a chunk another store is putting: when that put fails, no manifest names the missing chunk', async () => {
    for (const storeAhead of [undefined, 0]) {
      let chunkPuts = 0;
      // The first chunk put (by whichever store gets there first) waits, then fails.
      const store = hookedStore(new FsBlobStore(await tempDir()), async (key) => {
        if (key.startsWith('chunks/') && ++chunkPuts === 1) {
          await new Promise((resolve) => setTimeout(resolve, 300));
          throw fsError('EIO', 'write', key);
        }
      });
      const repo = await Repository.openOrInit(store, { blockSize: MiB });
      const recorded: string[] = [];
      const results = await backupVms({ inventory: await source(2, { same: true }), repo, lookupStoredDisks: none, storeAhead, onImages: async (images) => { recorded.push(...images.map((image) => image.vm.name)); } });
      await manifestsAreComplete(repo); // storeAhead 0 and the default alike
      expect(recorded).toEqual(results.filter((r) => r.ok).map((r) => r.vm));
    }
  });

  it('writes and credits each chunk and stored disk once, to the first VM in order: the same entries as one VM after another', async () => {
    for (const same of [true, false]) {
      const run = async (storeAhead?: number) => {
        const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB });
        return entries(await backupVms({ inventory: await source(8, { same }), repo, lookupStoredDisks: none, storeAhead }));
      };
      const inTurn = await run(0);
      expect(await run(undefined), same ? 'identical clones' : 'distinct disks').toEqual(inTurn);
      expect(inTurn.flat().filter((entry) => entry[2] === 'stored')).toHaveLength(same ? 1 : 8);
    }
  });

  it('credits a chunk that distinct disks share once: the bytes written over all entries are the chunk bytes the repository holds', async () => {
    for (const storeAhead of [undefined, 0]) {
      // Each disk: one block all share (a common template's), one of its own; every stored disk is new.
      const root = await tempDir();
      for (let i = 0; i < 6; i++) {
        await fs.writeFile(path.join(root, `v${i}.raw`), Buffer.concat([semiCompressible(MiB, 7), semiCompressible(MiB, 100 + i)]));
        await fs.writeFile(path.join(root, `v${i}.xml`), `<domain><name>v${i}</name><uuid>v${i}</uuid><devices><disk type='file' device='disk'><driver type='raw'/><source file='v${i}.raw'/><target dev='vda'/></disk></devices></domain>`);
      }
      const repoDir = await tempDir();
      const repo = await Repository.openOrInit(new FsBlobStore(repoDir), { blockSize: MiB });
      const results = entries(await backupVms({ inventory: await scanSource({ name: 's', type: 'libvirt', path: root }), repo, lookupStoredDisks: none, storeAhead }));
      const chunkFiles = (await fs.readdir(path.join(repoDir, 'chunks'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile() && !e.parentPath.includes('.tmp'));
      const chunkBytes = (await Promise.all(chunkFiles.map((e) => fs.stat(path.join(e.parentPath, e.name))))).reduce((sum, st) => sum + st.size, 0);
      expect(chunkFiles).toHaveLength(7);
      expect(results.flat().reduce((sum, entry) => sum + (entry[4] as number), 0), `storeAhead ${storeAhead}`).toBe(chunkBytes);
      expect(results.flat().map((entry) => entry[2])).toEqual(Array(6).fill('stored'));
    }
  });

  it('an abort with stores ahead in flight: nothing is put after backupVms returns, no temp file, no manifest naming a missing chunk', async () => {
    const dir = await tempDir();
    const controller = new AbortController();
    let puts = 0;
    let returned = false;
    let putsAfter = 0;
    const store = hookedStore(new FsBlobStore(dir), async (key) => {
      if (returned) putsAfter++;
      if (key.startsWith('chunks/') && ++puts === 10) controller.abort(new Error('stop'));
      await new Promise((resolve) => setTimeout(resolve, 5));
    });
    const repo = await Repository.openOrInit(store, { blockSize: MiB });
    await expect(backupVms({ inventory: await source(20, { same: false, mib: 3 }), repo, lookupStoredDisks: none, signal: controller.signal })).rejects.toThrow();
    returned = true;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(putsAfter).toBe(0);
    expect((await fs.readdir(dir, { recursive: true })).filter((name) => String(name).includes('.tmp-'))).toEqual([]);
    await manifestsAreComplete(repo);
  });

  it('an unexpected error inside a store ahead rejects the run (no unhandled rejection), leaving no manifest that names a missing chunk', async () => {
    let chunkPuts = 0;
    const store = hookedStore(new FsBlobStore(await tempDir()), async (key) => {
      if (key.startsWith('chunks/') && ++chunkPuts === 1) throw new TypeError('a bug');
    });
    const repo = await Repository.openOrInit(store, { blockSize: MiB });
    await expect(backupVms({ inventory: await source(3, { same: true }), repo, lookupStoredDisks: none })).rejects.toThrow('a bug');
    await manifestsAreComplete(repo);
  });
});
