/** Domains of a live connection are held still while their disks are read: never read before the hold (not ahead,
 *  not by the fast path), thawed whatever happens, and a domain that started after the scan is not backed up. */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { libvirtDomainXml, qemuImg, semiCompressible, tempDir } from '../../../test/helpers';
import { FsBlobStore } from '../repository/fs-blob-store';
import { Repository } from '../repository/repository';
import { InputError } from '../errors';
import { type SourceInventory, type VmInventory, scanSource } from '../sources/inventory';
import type { HeldDomain } from '../sources/libvirt-host';
import { type StoredDiskLookup, type VmBackupResult, backupVms } from './backup';

const MiB = 1024 * 1024;
const none: StoredDiskLookup = async (disks) => disks.map(() => undefined);

async function pool(count: number): Promise<{ root: string; inventory: () => Promise<SourceInventory> }> {
  const root = await tempDir();
  for (let i = 0; i < count; i++) {
    await fs.writeFile(path.join(root, `d${i}.raw`), semiCompressible(MiB, i + 1));
    await fs.writeFile(path.join(root, `v${i}.xml`), libvirtDomainXml(`v${i}`, `u${i}`, [{ file: `d${i}.raw`, type: 'raw' }]));
  }
  return { root, inventory: () => scanSource({ name: 's', type: 'libvirt', path: root }) };
}

const asDomain = (inventory: SourceInventory, states: Record<string, string>) => {
  for (const vm of inventory.vms) if (states[vm.name]) vm.domain = { uri: 'test:///', state: states[vm.name], persistent: true };
  return inventory;
};
const blockOf = async (repo: Repository, result: VmBackupResult) => {
  if (!result.ok) throw new Error(`${result.vm} failed: ${result.error}`);
  return (await repo.getStoredDisk(result.image.disks[0].digest)).files[0].blocks[0];
};
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('held domains', () => {
  for (const storeAhead of [undefined, 0]) {
    it(`reads a running domain's disk only once it is held, and thaws it after (storeAhead ${storeAhead})`, async () => {
      const { root, inventory } = await pool(6);
      const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB });
      const events: string[] = [];
      let frozen = semiCompressible(MiB, 99);
      // "The snapshot": what the disk holds from the hold on. A read before the hold would see the old bytes.
      const holdDomain = async (vm: VmInventory): Promise<HeldDomain> => {
        events.push(`hold ${vm.name}`);
        if (vm.name === 'v3') await fs.writeFile(path.join(root, 'd3.raw'), frozen);
        return { consistency: vm.domain!.state === 'running' ? 'crash' : 'offline', thaw: async () => { events.push(`thaw ${vm.name}`); return {}; } };
      };
      const run = (lookupStoredDisks: StoredDiskLookup) => inventory().then((inv) => backupVms({ inventory: asDomain(inv, { v3: 'running', v4: 'shut off' }), repo, lookupStoredDisks, storeAhead, holdDomain }));
      const results = await run(none);
      expect(await blockOf(repo, results[3])).toBe(sha(frozen));
      expect(results.map((r) => r.ok && r.image.consistency)).toEqual([undefined, undefined, undefined, 'crash', 'offline', undefined]);
      expect(events).toEqual(['hold v3', 'thaw v3', 'hold v4', 'thaw v4']);

      // Next run, every version known and trusted (the scan finds d3 as the last run left it): the running domain's
      // disk is read again, under the hold, which is when the guest's newest writes are in it.
      const known: StoredDiskLookup = async (disks) => disks.map((_, i) => results[i].ok ? { digest: (results[i] as { image: { disks: { digest: string }[] } }).image.disks[0].digest, readAt: new Date(), racilyClean: false } : undefined);
      frozen = semiCompressible(MiB, 77);
      await new Promise((resolve) => setTimeout(resolve, 300)); // d3's last write no longer racily clean: trustable by token

      const again = await run(known);
      expect(again.map((r) => r.ok && r.image.disks[0].bytesRead)).toEqual([0, 0, 0, MiB, 0, 0]);
      expect(await blockOf(repo, again[3])).toBe(sha(frozen));
    });
  }

  it('a domain shut off at the scan and running when held is not backed up, and is thawed', async () => {
    const { inventory } = await pool(3);
    const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB });
    let thawed = 0;
    const results = await backupVms({
      inventory: asDomain(await inventory(), { v1: 'shut off' }), repo, lookupStoredDisks: none,
      holdDomain: async () => ({ consistency: 'crash', thaw: async () => { thawed++; return {}; } }),
    });
    expect(results[1]).toMatchObject({ ok: false, error: expect.stringMatching(/was started after the scan/) });
    expect(thawed).toBe(1);
    expect([results[0].ok, results[2].ok]).toEqual([true, true]);
  });

  it('a hold that fails, a thaw that finds the domain started, and a thaw that could not commit', async () => {
    const { inventory } = await pool(4);
    const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB });
    const warnings: string[] = [];
    const results = await backupVms({
      inventory: asDomain(await inventory(), { v0: 'running', v1: 'shut off', v2: 'running' }), repo, lookupStoredDisks: none, onWarning: (w) => warnings.push(w),
      holdDomain: async (vm) => {
        if (vm.name === 'v0') throw new InputError('virsh snapshot-create-as failed: no space');
        if (vm.name === 'v1') return { consistency: 'offline', thaw: async () => ({ error: 'domain v1 started while its disks were read' }) };
        return { consistency: 'crash', thaw: async () => ({ warning: 'domain v2 still runs on the overlay' }) };
      },
    });
    expect(results.map((r) => (r.ok ? 'ok' : r.error))).toEqual([
      expect.stringMatching(/v0 could not be held still.*no space/), 'domain v1 started while its disks were read', 'ok', 'ok',
    ]);
    expect(warnings).toEqual(['domain v2 still runs on the overlay']);
  });

  it('a failure while preparing changed reads reads the disks whole, says why, and still thaws the domain', async () => {
    const { inventory } = await pool(2);
    const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB });
    const warnings: string[] = [];
    const events: string[] = [];
    const results = await backupVms({
      inventory: asDomain(await inventory(), { v0: 'running' }), repo, lookupStoredDisks: none, onWarning: (w) => warnings.push(w),
      holdDomain: async () => ({
        consistency: 'crash',
        thaw: async () => { events.push('thaw'); return {}; },
        changes: {
          checkpoint: 'vmdedup-000000001a', earlier: [],
          get tracked(): Map<string, string> { throw new Error('EMFILE: too many open files'); },
          take: async () => undefined,
          changedSince: async () => new Map(),
          keepOnly: async (keep) => { events.push(`keep ${keep.join(',')}`); return undefined; },
        },
      }),
    });
    expect(results.map((r) => r.ok && r.image.disks[0].bytesRead)).toEqual([MiB, MiB]);
    expect(warnings).toEqual(['v0: its disks are read whole: EMFILE: too many open files']);
    expect(events).toEqual(['thaw', 'keep vmdedup-000000001a']);
  });
  it('a shut-off domain takes its checkpoint only on the disks it reads, and deletes older ones before reading (from those disks only, when not all)', async () => {
    const root = await tempDir();
    for (const name of ['a', 'b']) await qemuImg('create', '-q', '-f', 'qcow2', path.join(root, `${name}.qcow2`), '1M');
    await fs.writeFile(path.join(root, 'v0.xml'), libvirtDomainXml('v0', 'u0', [{ file: 'a.qcow2', type: 'qcow2' }, { file: 'b.qcow2', type: 'qcow2' }]));
    const inventory = async () => asDomain(await scanSource({ name: 's', type: 'libvirt', path: root }), { v0: 'shut off' });
    const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize: MiB });
    const events: string[] = [];
    let runs = 0;
    const holdDomain = async (): Promise<HeldDomain> => {
      const checkpoint = `vmdedup-00000000${++runs}`;
      return {
        consistency: 'offline',
        thaw: async () => { events.push('thaw'); return {}; },
        changes: {
          checkpoint, earlier: runs > 1 ? ['vmdedup-000000001'] : [],
          tracked: new Map([[path.join(root, 'a.qcow2'), 'vda'], [path.join(root, 'b.qcow2'), 'vdb']]),
          take: async (devs) => { events.push(`take ${checkpoint} ${devs.join(',')}`); },
          changedSince: async () => new Map(),
          keepOnly: async (keep, devs) => { events.push(`keep ${keep.join(',')}${devs ? ` on ${devs.join(',')}` : ''}`); return undefined; },
        },
      };
    };
    const first = await backupVms({ inventory: await inventory(), repo, lookupStoredDisks: none, holdDomain });
    expect(first.map((r) => r.ok)).toEqual([true]);
    expect(events.splice(0)).toEqual(['take vmdedup-000000001 vda,vdb', 'keep vmdedup-000000001', 'thaw']);
    // a.qcow2 known by its file's token (the fast path), b.qcow2 not: the checkpoint goes on vdb alone, and the one
    // a's content is recorded under stays (vdb's older bitmaps go, so that they do not pile up).
    const image = (first[0] as { image: { disks: { path: string; digest: string }[] } }).image;
    const aDigest = image.disks.find((d) => d.path.endsWith('a.qcow2'))!.digest;
    await new Promise((resolve) => setTimeout(resolve, 150)); // the files no longer racily clean
    const second = await backupVms({
      inventory: await inventory(), repo, holdDomain,
      lookupStoredDisks: async (disks) => disks.map((d) => (d.versionToken.startsWith('libvirt-checkpoint:') || !d.identifier.endsWith('a.qcow2') ? undefined : { digest: aDigest, readAt: new Date(), racilyClean: false })),
    });
    expect(second.map((r) => r.ok)).toEqual([true]);
    expect(events).toEqual(['take vmdedup-000000002 vdb', 'keep vmdedup-000000002 on vdb', 'thaw']);
  });
});
