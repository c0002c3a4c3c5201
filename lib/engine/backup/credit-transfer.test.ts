/** Adversarial: what a failed VM read and wrote is credited to the next VM in order, as if the failed VM were absent. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { libvirtDomainXml, manifestsAreComplete, semiCompressible, tempDir } from '../../../test/helpers';
import { overwrite } from '../../demo/fleet';
import { fsError, hookedStore } from '../repository/faulty-blob-store';
import { FsBlobStore } from '../repository/fs-blob-store';
import { Repository } from '../repository/repository';
import { scanSource } from '../sources/inventory';
import { type VmBackupResult, backupVms } from './backup';

const MiB = 1024 * 1024;
const none = async (disks: unknown[]) => disks.map(() => undefined);
const entries = (results: VmBackupResult[]) => results.map((r) => (r.ok ? r.image.disks.map((d) => [r.vm, path.basename(d.path), d.action, d.bytesRead, d.bytesWritten]) : [r.vm, 'failed']));

/** v0: disks a0 (content shared with v1's a1, per `share`) and b0 (keeps changing: v0 fails); v1..v3 one disk each. */
async function fleet(withV0: boolean, share: 'same' | 'block') {
  const root = await tempDir();
  const disk = (i: number) => share === 'same' ? semiCompressible(2 * MiB, 7) : Buffer.concat([semiCompressible(MiB, 7), semiCompressible(MiB, 100 + i)]);
  if (withV0) {
    await fs.writeFile(path.join(root, 'a0.raw'), disk(0));
    await fs.writeFile(path.join(root, 'b0.raw'), semiCompressible(MiB, 55));
    await fs.writeFile(path.join(root, 'v0.xml'), libvirtDomainXml('v0', 'u0', [{ file: 'a0.raw', type: 'raw', dev: 'vda' }, { file: 'b0.raw', type: 'raw', dev: 'vdb' }]));
  }
  for (let i = 1; i < 4; i++) {
    await fs.writeFile(path.join(root, `a${i}.raw`), disk(share === 'same' && i > 1 ? 20 + i : i).subarray(0));
    await fs.writeFile(path.join(root, `v${i}.xml`), libvirtDomainXml(`v${i}`, `u${i}`, [{ file: `a${i}.raw`, type: 'raw', dev: 'vda' }]));
  }
  return root;
}

async function run(root: string, storeAhead: number | undefined) {
  let seed = 0;
  const store = hookedStore(new FsBlobStore(await tempDir()), async (key) => {
    if (key.startsWith('chunks/')) await overwrite(path.join(root, 'b0.raw'), 0, 4096, ++seed).catch(() => undefined);
  });
  const repo = await Repository.openOrInit(store, { blockSize: MiB });
  const results = await backupVms({ inventory: await scanSource({ name: 's', type: 'libvirt', path: root }), repo, lookupStoredDisks: none, storeAhead });
  await manifestsAreComplete(repo);
  return results;
}

describe('credit after a VM that fails once its first disk is stored', () => {
  for (const share of ['same', 'block'] as const) {
    for (const storeAhead of [undefined, 0]) {
      it(`${share === 'same' ? 'byte-identical disks' : 'disks sharing a block'}, storeAhead ${storeAhead}`, async () => {
        const without = entries(await run(await fleet(false, share), storeAhead));
        const withFailing = await run(await fleet(true, share), storeAhead);
        expect(withFailing[0]).toMatchObject({ ok: false, error: expect.stringMatching(/changed while it was being read/) });
        expect(entries(withFailing).slice(1)).toEqual(without);
      });
    }
  }
});

describe('a failed store of a common disk is met by every VM using it, never started again', () => {
  const common = async (users: number) => {
    const root = await tempDir();
    await fs.writeFile(path.join(root, 'c.raw'), semiCompressible(2 * MiB, 9));
    for (let i = 0; i < users; i++) await fs.writeFile(path.join(root, `v${i}.xml`), libvirtDomainXml(`v${i}`, `u${i}`, [{ file: 'c.raw', type: 'raw' }]));
    return root;
  };
  for (const storeAhead of [undefined, 0]) {
    it(`an InputError (disk keeps changing), storeAhead ${storeAhead}`, async () => {
      const puts = async (users: number) => {
        const root = await common(users);
        let n = 0;
        const store = hookedStore(new FsBlobStore(await tempDir()), async (key) => {
          if (key.startsWith('chunks/')) { n++; await overwrite(path.join(root, 'c.raw'), 0, 4096, n); }
        });
        const repo = await Repository.openOrInit(store, { blockSize: MiB });
        const results = await backupVms({ inventory: await scanSource({ name: 's', type: 'libvirt', path: root }), repo, lookupStoredDisks: none, storeAhead });
        expect(results.map((r) => r.ok)).toEqual(Array(users).fill(false));
        return n;
      };
      expect(await puts(4)).toBe(await puts(1));
    });
    it(`a RunFault putting the stored disk, storeAhead ${storeAhead}`, async () => {
      const root = await common(4);
      let diskPuts = 0;
      const store = hookedStore(new FsBlobStore(await tempDir()), async (key) => {
        if (key.startsWith('disks/')) { diskPuts++; throw fsError('EIO', 'write', key); }
      });
      const repo = await Repository.openOrInit(store, { blockSize: MiB });
      const results = await backupVms({ inventory: await scanSource({ name: 's', type: 'libvirt', path: root }), repo, lookupStoredDisks: none, storeAhead });
      expect(results[0]).toMatchObject({ ok: false, stoppedRun: true });
      expect(results.slice(1).map((r) => !r.ok && r.attempted)).toEqual([false, false, false]);
      expect(diskPuts).toBe(1);
    });
  }
});
