/**
 * Restore end to end on fleets made by qemu-img: every drift kind, both policies, both choices, exit codes,
 * JSON, byte identity of private disks, `qemu-img check` and backing chains of every result, damage.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, buildFleet, overwrite } from '../lib/demo/fleet';
import { cli, createTestDatabase, qemuImg, tempDir } from './helpers';

type RestoreJson = {
  status: 'planned' | 'needs-confirmation' | 'restored';
  vm: string; backupId: string; message: string;
  drift: { disk: string; kind: string; recorded: Record<string, unknown>; current: Record<string, unknown>; sharedWith: string[] }[];
  disks: { path: string; common: boolean; action: string; verified: boolean }[];
};

async function same(a: string, b: string): Promise<boolean> {
  return (await fs.readFile(a)).equals(await fs.readFile(b));
}

async function qemuCheck(file: string): Promise<void> {
  await qemuImg('check', file); // throws on a non-zero exit
  const chain = await qemuImg('info', '--backing-chain', file);
  expect(chain).not.toMatch(/Could not open/);
}

describe('vmdedup restore (CLI)', () => {
  let env: Record<string, string>;
  let fleet: Fleet;
  let home: string;
  let images: string;
  let out: string;
  const target = (name: string) => path.join(out, name);
  const restore = async (...args: string[]) => {
    const result = await cli(env, ...args, '--json');
    return { ...result, json: result.stdout ? (JSON.parse(result.stdout) as RestoreJson) : undefined };
  };

  beforeAll(async () => {
    home = await tempDir();
    out = path.join(home, 'restores');
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 3, baseMiB: 8, configDiskMiB: 2, privateDiskMiB: 3, vmwareVms: 2, vmwareBaseMiB: 4 });
    images = path.join(fleet.libvirtDir, 'images');
    env = { VMDEDUP_HOME: home, DATABASE_URL: await createTestDatabase() };
    await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir);
    await cli(env, 'source', 'add', 'esx', '--type', 'vmware', '--path', fleet.vmwareDir!);
    expect((await cli(env, 'backup')).code).toBe(0);
  });

  it('restores to a folder without drift: private disks byte-identical, shared disks kept, chains valid', async () => {
    const plan = await restore('restore-plan', 'vm01', '--target', target('plain'));
    expect(plan.code).toBe(0);
    expect(plan.json).toMatchObject({ status: 'planned', vm: 'vm01', drift: [] });
    await expect(fs.access(target('plain'))).rejects.toThrow(); // planning writes nothing

    const done = await restore('restore', 'vm01', '--target', target('plain'));
    expect(done.code).toBe(0);
    expect(done.json!.status).toBe('restored');
    const byName = Object.fromEntries(done.json!.disks.map((d) => [path.basename(d.path), d]));
    expect(byName['vm01.qcow2']).toMatchObject({ action: 'restored', common: false, verified: true });
    expect(byName['vm01-data.raw']).toMatchObject({ action: 'restored', verified: true });
    expect(byName['base-1.qcow2']).toMatchObject({ action: 'skipped-common', common: true, path: path.join(images, 'base-1.qcow2') });
    expect(byName['site-config.raw']).toMatchObject({ action: 'skipped-common', common: true });
    expect(await same(target('plain/images/vm01-data.raw'), path.join(images, 'vm01-data.raw'))).toBe(true);
    await qemuCheck(target('plain/images/vm01.qcow2'));
    // the restored clone reads exactly like the original (same data through its chain)
    await qemuImg('compare', target('plain/images/vm01.qcow2'), path.join(images, 'vm01.qcow2'));
    const xml = await fs.readFile(target('plain/vm01.xml'), 'utf8');
    expect(xml).toContain(`file='images/vm01.qcow2'`);
    expect(xml).toContain(`file='${path.join(images, 'site-config.raw')}'`);
  });

  it('writes the same bytes with direct I/O and through the page cache, and leaves no temp or probe files', async () => {
    const restored: Record<string, string> = {};
    for (const [name, directIo] of [['direct', '1'], ['buffered', '0']]) {
      const result = await cli({ ...env, VMDEDUP_DIRECT_IO: directIo }, 'restore', 'vm01', '--target', target(name), '--policy', 'overwrite', '--confirm-drift', '--json');
      expect(result.code, result.stderr).toBe(0);
      restored[name] = target(name);
      expect((await fs.readdir(target(name), { recursive: true })).filter((f) => path.basename(f).startsWith('.'))).toEqual([]);
    }
    for (const file of ['vm01.qcow2', 'vm01-data.raw', 'base-1.qcow2', 'site-config.raw']) {
      for (const dir of Object.values(restored)) {
        const copy = path.join(dir, 'images', file);
        if (file !== 'vm01.qcow2') expect(await same(copy, path.join(images, file)), `${dir} ${file}`).toBe(true);
        await qemuImg('compare', copy, path.join(images, file));
      }
    }
    await qemuCheck(path.join(restored.direct, 'images', 'vm01.qcow2'));
    // VMware: descriptors are small text files, whose direct writes are padded and then cut to size.
    const vmx = await cli(env, 'restore', 'app1', '--target', target('vmware-direct'), '--policy', 'overwrite', '--confirm-drift', '--json');
    expect(vmx.code, vmx.stderr).toBe(0);
    const gold = path.join(fleet.vmwareDir!, 'shared', 'gold.vmdk');
    expect(await same(target('vmware-direct/shared/gold.vmdk'), gold)).toBe(true);
    await qemuImg('compare', target('vmware-direct/app1/app1.vmdk'), path.join(fleet.vmwareDir!, 'app1', 'app1.vmdk'));
  });

  /** A fresh backup of the fleet as it is now: each drift test starts from a backup without drift. */
  const rebaseline = async () => expect((await cli(env, 'backup')).code).toBe(0);

  it('modified shared disk: exit 3 without confirmation, then reattach or copy', async () => {
    await rebaseline();
    const config = path.join(images, 'site-config.raw');
    const original = await fs.readFile(config);
    await overwrite(config, 4096, 4096, 77);
    try {
      const plan = await restore('restore', 'vm02', '--target', target('modified'));
      expect(plan.code).toBe(3);
      expect(plan.json!.status).toBe('needs-confirmation');
      expect(plan.json!.drift).toEqual([expect.objectContaining({
        disk: config, kind: 'modified', sharedWith: ['vm01', 'vm03'],
        // For a person: sizes then and now, and when it changed (not only version tokens).
        recorded: expect.objectContaining({ size: expect.any(Number), backedUpAt: expect.any(String) }),
        current: expect.objectContaining({ size: (await fs.stat(config)).size, changedAt: (await fs.stat(config)).mtime.toISOString() }),
      })]);
      expect(plan.json!.message).toMatch(/The shared disk site-config\.raw \(used by vm01 and vm03\) was modified after this backup of .*Policy no-overwrite keeps/);
      await expect(fs.access(target('modified'))).rejects.toThrow();

      const reattached = await restore('restore', 'vm02', '--target', target('modified'), '--confirm-drift');
      expect(reattached.code).toBe(0);
      expect(reattached.json!.disks.find((d) => d.path === config)).toMatchObject({ action: 'reattached' });
      expect(await fs.readFile(config)).not.toEqual(original); // the shared disk was not written

      const copied = await restore('restore', 'vm02', '--target', target('modified-copy'), '--confirm-drift', '--choice', 'copy');
      expect(copied.code).toBe(0);
      const copy = copied.json!.disks.find((d) => d.action === 'copied')!;
      expect(copy.path).toBe(target('modified-copy/images/site-config.raw'));
      expect((await fs.readFile(copy.path)).equals(original)).toBe(true); // the backed-up version
      expect(await fs.readFile(target('modified-copy/vm02.xml'), 'utf8')).toContain(`file='images/site-config.raw'`);
    } finally {
      await fs.writeFile(config, original);
    }
  });

  it('missing shared disk: reattach is refused, copy restores it', async () => {
    await rebaseline();
    const config = path.join(images, 'site-config.raw');
    await fs.rename(config, `${config}.away`);
    try {
      const plan = await restore('restore-plan', 'vm03', '--target', target('missing'));
      expect(plan.json!.status).toBe('needs-confirmation');
      expect(plan.json!.message).toMatch(/Choose copy to restore the backed-up version/);
      expect(plan.json!.drift).toEqual([expect.objectContaining({ kind: 'missing', disk: config, recorded: expect.objectContaining({ path: config }), current: { path: null } })]);
      const refused = await cli(env, 'restore', 'vm03', '--target', target('missing'), '--confirm-drift');
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/site-config\.raw is missing: it cannot be reattached; use --choice copy/);
      const copied = await restore('restore', 'vm03', '--target', target('missing'), '--confirm-drift', '--choice', 'copy');
      expect(copied.code).toBe(0);
      expect(copied.json!.disks.filter((d) => d.action === 'copied').map((d) => path.basename(d.path))).toEqual(['site-config.raw']);
    } finally {
      await fs.rename(`${config}.away`, config);
    }
  });

  it('retargeted slot: the live config points the shared disk slot elsewhere', async () => {
    await rebaseline();
    const xmlPath = path.join(fleet.libvirtDir, 'vm03.xml');
    const xml = await fs.readFile(xmlPath, 'utf8');
    await fs.copyFile(path.join(images, 'site-config.raw'), path.join(images, 'site-config-v2.raw'));
    await fs.writeFile(xmlPath, xml.replace("images/site-config.raw", 'images/site-config-v2.raw'));
    try {
      const plan = await restore('restore-plan', 'vm03', '--target', target('retargeted'));
      expect(plan.json!.status).toBe('needs-confirmation');
      expect(plan.json!.drift).toEqual([expect.objectContaining({
        kind: 'retargeted', disk: path.join(images, 'site-config.raw'),
        recorded: { slot: 'vdb', path: path.join(images, 'site-config.raw') }, current: { slot: 'vdb', path: path.join(images, 'site-config-v2.raw') },
      })]);
      expect(plan.json!.message).toMatch(/vm03's disk slot vdb pointed at the shared disk site-config\.raw .* and points at .*site-config-v2\.raw now/);
      const done = await restore('restore', 'vm03', '--target', target('retargeted'), '--confirm-drift');
      expect(done.json!.disks.find((d) => d.action === 'reattached')!.path).toBe(path.join(images, 'site-config-v2.raw'));
      expect(await fs.readFile(target('retargeted/vm03.xml'), 'utf8')).toContain(`file='${path.join(images, 'site-config-v2.raw')}'`);
    } finally {
      await fs.writeFile(xmlPath, xml);
      await fs.rm(path.join(images, 'site-config-v2.raw'));
    }
  });

  it('parent-changed: a linked clone re-based onto another image', async () => {
    await rebaseline();
    const clone = path.join(images, 'vm02.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(images, 'other-base.qcow2'), '8M');
    await qemuImg('rebase', '-u', '-b', 'other-base.qcow2', '-F', 'qcow2', clone);
    try {
      const plan = await restore('restore-plan', 'vm02', '--target', target('parent'));
      expect(plan.json!.drift).toEqual([expect.objectContaining({
        kind: 'parent-changed', disk: clone,
        recorded: expect.objectContaining({ parent: path.join(images, 'base-1.qcow2') }), current: expect.objectContaining({ parent: path.join(images, 'other-base.qcow2') }),
      })]);
      const done = await restore('restore', 'vm02', '--target', target('parent'), '--confirm-drift');
      expect(done.code).toBe(0);
      // the restored clone points at its recorded parent again, and reads like the backup
      const info = await qemuImg('info', '--backing-chain', target('parent/images/vm02.qcow2'));
      expect(info).toContain(path.join(images, 'base-1.qcow2'));
      await qemuCheck(target('parent/images/vm02.qcow2'));
    } finally {
      await qemuImg('rebase', '-u', '-b', 'base-1.qcow2', '-F', 'qcow2', clone);
      await fs.rm(path.join(images, 'other-base.qcow2'));
    }
  });

  it('VMware: restores a linked clone with parentFileNameHint and parentCID matching its parent', async () => {
    const done = await restore('restore', 'app1', '--target', target('esx'));
    expect(done.code).toBe(0);
    const child = target('esx/app1/app1.vmdk');
    const descriptor = (await fs.readFile(child)).toString('latin1');
    const gold = path.join(fleet.vmwareDir!, 'shared', 'gold.vmdk');
    expect(descriptor).toContain(`parentFileNameHint="${gold}"`);
    const goldCid = /CID=([0-9a-f]+)/.exec((await fs.readFile(gold)).toString('latin1'))![1];
    expect(descriptor).toMatch(new RegExp(`parentCID=0*${goldCid}`));
    await qemuCheck(child);
    await qemuImg('compare', child, path.join(fleet.vmwareDir!, 'app1', 'app1.vmdk'));
    expect(await fs.readFile(target('esx/app1/app1.vmx'), 'utf8')).toContain(`scsi0:0.fileName = "app1.vmdk"`);
  });

  it('VMware: a parent whose CID changed is parent-changed drift for the child', async () => {
    await rebaseline();
    const gold = path.join(fleet.vmwareDir!, 'shared', 'gold.vmdk');
    const bytes = await fs.readFile(gold);
    const text = bytes.toString('latin1');
    const cid = /\nCID=([0-9a-f]+)/.exec(text)![1];
    const changed = Buffer.from(text.replace(`\nCID=${cid}`, `\nCID=${cid === '1234abcd' ? '1234abce' : '1234abcd'}`), 'latin1');
    await fs.writeFile(gold, changed);
    try {
      const plan = await restore('restore-plan', 'app2', '--target', target('esx-cid'));
      const kinds = plan.json!.drift.map((d) => `${path.basename(d.disk)}:${d.kind}`).sort();
      expect(kinds).toEqual(['app2.vmdk:parent-changed', 'gold.vmdk:modified']);
    } finally {
      await fs.writeFile(gold, bytes);
    }
  });

  it('overwrite policy in place: lists every affected VM, writes the shared disk only when confirmed', async () => {
    await rebaseline();
    const config = path.join(images, 'site-config.raw');
    const original = await fs.readFile(config);
    await overwrite(config, 0, 8192, 5);
    try {
      const plan = await restore('restore', 'vm01', '--in-place', '--policy', 'overwrite');
      expect(plan.code).toBe(3);
      expect(plan.json!.message).toMatch(/Policy overwrite writes the shared disks? .*site-config\.raw.* in place: vm02 and vm03 use/);
      expect((await fs.readFile(config)).equals(original)).toBe(false);
      const done = await restore('restore', 'vm01', '--in-place', '--policy', 'overwrite', '--confirm-drift');
      expect(done.code).toBe(0);
      expect(done.json!.disks.find((d) => d.path === config)).toMatchObject({ action: 'overwritten', verified: true });
      expect((await fs.readFile(config)).equals(original)).toBe(true);
      await qemuCheck(path.join(images, 'vm01.qcow2'));
    } finally {
      await fs.writeFile(config, original);
    }
  });

  it('refuses bad input with exit 2 and one line', async () => {
    const cases: [string[], RegExp][] = [
      [['restore', 'nope', '--target', target('x')], /no backup of a VM named 'nope'/],
      [['restore', 'vm01', '--target', path.join(fleet.libvirtDir, 'inside')], /lies inside the source/],
      [['restore', 'vm01'], /exactly one of --target <dir> or --in-place/],
      [['restore', 'vm01', '--target', target('plain')], /target folder is not empty/],
      [['restore', 'vm01', '--backup', 'nosuch', '--target', target('y')], /no backup image 'nosuch'/],
      [['restore', 'vm01', '--target', target('z'), '--policy', 'yolo'], /--policy must be/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(env, ...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(message);
    }
  });

  it('stops on a corrupt block, names it, and leaves nothing under a final name', async () => {
    await rebaseline();
    // corrupt every chunk of vm03's private disk by flipping a byte in each stored chunk file it uses
    const backups = JSON.parse((await cli(env, 'backups', '--vm', 'vm03', '--json')).stdout) as { backups: { disks: { path: string; digest: string }[] }[] };
    const digest = backups.backups[0].disks.find((d) => d.path.endsWith('vm03-data.raw'))!.digest;
    const manifest = JSON.parse(await fs.readFile(path.join(home, 'repository', 'disks', `${digest}.json`), 'utf8')) as { files: { blocks: (string | null)[] }[] };
    const id = manifest.files[0].blocks.find(Boolean)!;
    const chunk = path.join(home, 'repository', 'chunks', id.slice(0, 2), id);
    const saved = await fs.readFile(chunk);
    const damaged = Buffer.from(saved);
    damaged[damaged.length - 1] ^= 0xff;
    await fs.writeFile(chunk, damaged);
    try {
      const result = await cli(env, 'restore', 'vm03', '--target', target('damaged'));
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`chunk ${id.slice(0, 12)} is corrupt`));
      const left = await fs.readdir(target('damaged'), { recursive: true }).catch(() => [] as string[]);
      expect(left.filter((name) => /\.(raw|qcow2|xml)$/.test(name))).toEqual([]);
    } finally {
      await fs.writeFile(chunk, saved);
    }
  });
});

