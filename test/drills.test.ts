/**
 * Restore drills and verify's I/O budget (issue 12), through the real CLI on a fleet made by qemu-img: linked qcow2
 * clones of a shared base, a shared raw config disk, VMDK VMs. A drill restores into scratch space, compares each
 * disk with its backup block for block, checks it with qemu-img, and removes the scratch space; its checks catch a
 * changed block, a corrupt qcow2 and a chain that reads the live parent.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildFleet } from '../lib/demo/fleet';
import type { PrismaClient } from '../lib/generated/prisma/client';
import { checkRestoredDisk } from '../lib/engine/verify/drill-check';
import { FsBlobStore } from '../lib/engine/repository/fs-blob-store';
import { Repository } from '../lib/engine/repository/repository';
import { cli, createMigratedCatalog, deadPid, qemuImg, tempDir } from './helpers';

type Drill = { vm: string; backupId: string; status: string; problems: string[]; disks: number };

describe('restore drills and the verify budget', () => {
  let db: PrismaClient;
  let env: Record<string, string>;
  let home: string;
  let fleet: Awaited<ReturnType<typeof buildFleet>>;

  beforeAll(async () => {
    home = await tempDir();
    const catalog = await createMigratedCatalog();
    db = catalog.db;
    env = { VMDEDUP_HOME: path.join(home, 'home'), DATABASE_URL: catalog.url };
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 2, baseMiB: 8, configDiskMiB: 1, privateDiskMiB: 2, vmwareVms: 1, vmwareBaseMiB: 4 });
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(env, 'source', 'add', 'esx', '--type', 'vmware', '--path', fleet.vmwareDir!)).code).toBe(0);
    const backup = await cli(env, 'backup');
    expect(backup.code, backup.stderr).toBe(0);
  }, 120_000);

  it('drills every VM: restored, identical to the backup, qemu-img clean; the scratch space is gone; recorded; longest ago first', async () => {
    const scratch = path.join(home, 'scratch');
    await fs.mkdir(scratch);
    const vms = fleet.libvirtVms.length + fleet.vmwareVms.length;
    const first = await cli(env, 'drill', '--count', String(vms), '--scratch', scratch, '--json');
    expect(first.code, first.stderr + first.stdout).toBe(0);
    const drills = (JSON.parse(first.stdout) as { drills: Drill[] }).drills;
    expect(drills.map((d) => d.vm).sort()).toEqual([...fleet.libvirtVms, ...fleet.vmwareVms].sort());
    for (const d of drills) expect(d, JSON.stringify(d)).toMatchObject({ status: 'ok', problems: [] });
    // A linked clone restores with its base, the shared config disk and its private disk: four disks checked.
    expect(drills.find((d) => d.vm === fleet.libvirtVms[0])!.disks).toBe(4);
    expect(await fs.readdir(scratch)).toEqual([]);
    const recorded = await db.backupImage.findMany({ where: { drilledAt: { not: null } }, select: { id: true, drillStatus: true } });
    expect(recorded.map((r) => r.id).sort()).toEqual(drills.map((d) => d.backupId).sort());
    expect(recorded.every((r) => r.drillStatus === 'ok')).toBe(true);
    // A drill killed before it removed its folder: the next drill on this host removes it; a live process's and
    // another host's stay.
    const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_').slice(0, 40);
    const left = [`vmdedup-drill-${host}-${await deadPid()}-vm01-x1`, `vmdedup-drill-${host}-${process.pid}-vm01-x2`, 'vmdedup-drill-otherhost-1-vm01-x3'];
    for (const name of left) await fs.mkdir(path.join(scratch, name, 'images'), { recursive: true });
    // One more drill takes the VM drilled longest ago (the first of the run above).
    const next = JSON.parse((await cli(env, 'drill', '--scratch', scratch, '--json')).stdout) as { drills: Drill[] };
    expect(next.drills.map((d) => d.vm)).toEqual([drills[0].vm]);
    expect((await fs.readdir(scratch)).sort()).toEqual(left.slice(1).sort());
    expect((await cli(env, 'drill', '--vm', 'nope')).stderr).toMatch(/no backups of a VM named 'nope'/);
    expect((await cli(env, 'drill', '--count', '0')).stderr).toMatch(/--count must be a whole number/);
  }, 180_000);

  it('the checks find a changed block, a corrupt qcow2 and a chain that reads the live parent', async () => {
    const vm = fleet.libvirtVms[0];
    const dir = path.join(home, 'restored');
    const restored = await cli(env, 'restore', vm, '--target', dir, '--policy', 'overwrite', '--confirm-drift');
    expect(restored.code, restored.stderr + restored.stdout).toBe(0);
    const repo = await Repository.open(new FsBlobStore(path.join(env.VMDEDUP_HOME, 'repository')));
    const image = await repo.getBackupImage((await db.backupImage.findFirstOrThrow({ where: { vm: { name: vm } }, orderBy: { createdAt: 'desc' } })).id);
    const fileOf = async (entry: (typeof image.disks)[number]) => {
      const found: string[] = [];
      const walk = async (d: string) => { for (const e of await fs.readdir(d, { withFileTypes: true })) { if (e.isDirectory()) await walk(path.join(d, e.name)); else if (e.name === path.basename(entry.path)) found.push(path.join(d, e.name)); } };
      await walk(dir);
      expect(found, entry.path).toHaveLength(1);
      return found[0];
    };
    const clone = image.disks.find((d) => d.format === 'qcow2' && d.parent)!;
    const raw = image.disks.find((d) => d.format === 'raw')!;
    const [cloneFile, rawFile] = [await fileOf(clone), await fileOf(raw)];
    expect(await checkRestoredDisk(repo, { entry: clone, files: [cloneFile], root: dir })).toEqual([]);
    expect(await checkRestoredDisk(repo, { entry: raw, files: [rawFile], root: dir })).toEqual([]);

    // One byte changed past the first block of the raw disk.
    const handle = await fs.open(rawFile, 'r+');
    const at = (await handle.stat()).size - 100;
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    await handle.write(Buffer.from([byte[0] ^ 0xff]), 0, 1, at);
    await handle.close();
    expect((await checkRestoredDisk(repo, { entry: raw, files: [rawFile], root: dir })).join()).toMatch(/1 block differs from the backup/);

    // The clone pointed back at the live base: its header may differ (the pointer), but the chain leaves the folder.
    const liveBase = path.join(fleet.libvirtDir, 'images', path.basename(clone.parent!.path));
    await qemuImg('rebase', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b', liveBase, cloneFile);
    expect((await checkRestoredDisk(repo, { entry: clone, files: [cloneFile], root: dir })).join()).toMatch(/backing chain leaves the drill's folder/);

    // A corrupt qcow2: the refcount table offset in the header (bytes 48..55) pointed inside the L1 table's cluster.
    const base = image.disks.find((d) => d.format === 'qcow2' && !d.parent)!;
    const baseFile = await fileOf(base);
    const h = await fs.open(baseFile, 'r+');
    const header = Buffer.alloc(8);
    await h.read(header, 0, 8, 40); // l1_table_offset
    await h.write(header, 0, 8, 48);
    await h.close();
    const problems = (await checkRestoredDisk(repo, { entry: base, files: [baseFile], root: dir })).join();
    expect(problems).toMatch(/base-1.qcow2: 1 block differs from the backup/);
    expect(problems).toMatch(/qemu-img (check found corruption|check failed|info cannot open)/);
  }, 120_000);

  it('verify --budget reads about that much per run, those waiting longest first; --outdated-after counts what is overdue', async () => {
    const all = JSON.parse((await cli(env, 'verify', '--json')).stdout) as { images: { backupId: string }[]; bytesRead: number };
    expect(all.images.length).toBeGreaterThan(2);
    // Everything waits 10 days; each image's wait differs (the order is by wait).
    const ids = all.images.map((i) => i.backupId).sort();
    for (const [n, id] of ids.entries()) await db.backupImage.update({ where: { id }, data: { verifiedAt: new Date(Date.now() - (10 * 86_400_000 + n * 60_000)) } });
    const budget = 1024 * 1024; // 1 MiB: less than any image needs, so one image per run
    const first = await cli(env, 'verify', '--outdated-after', '7', '--budget', '1M', '--json');
    expect(first.code, first.stderr).toBe(0);
    const one = JSON.parse(first.stdout) as { images: { backupId: string }[]; bytesRead: number; deferred: number; overdue: number };
    expect(one.images.map((i) => i.backupId)).toEqual([ids[ids.length - 1]]); // the one waiting longest
    expect(one.bytesRead).toBeGreaterThanOrEqual(budget);
    expect(one.deferred).toBe(ids.length - 1);
    expect(one.overdue).toBe(ids.length - 1);
    const second = JSON.parse((await cli(env, 'verify', '--outdated-after', '7', '--budget', '1M', '--json')).stdout) as typeof one;
    expect(second.images.map((i) => i.backupId)).toEqual([ids[ids.length - 2]]);
    const rest = JSON.parse((await cli(env, 'verify', '--outdated-after', '7', '--json')).stdout) as typeof one;
    expect(rest.images).toHaveLength(ids.length - 2);
    expect([rest.deferred, rest.overdue]).toEqual([0, 0]);
    expect((await cli(env, 'verify', '--budget', 'lots')).stderr).toMatch(/--budget must be a size such as 500M/);
  }, 120_000);

  it('verify --max-rate reads no faster than the cap', async () => {
    const started = Date.now();
    const capped = await cli(env, 'verify', '--vm', fleet.libvirtVms[0], '--max-rate', '4M/s', '--json');
    const seconds = (Date.now() - started) / 1000;
    expect(capped.code, capped.stderr).toBe(0);
    const { bytesRead } = JSON.parse(capped.stdout) as { bytesRead: number };
    expect(bytesRead).toBeGreaterThan(8 * 1024 * 1024);
    // A lower bound only (the cap can make it slower, nothing can make it faster): the reads alone take that long.
    expect(seconds).toBeGreaterThanOrEqual(bytesRead / (4 * 1024 * 1024) - 1);
  }, 120_000);
});
