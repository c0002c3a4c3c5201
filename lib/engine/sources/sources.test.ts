import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemuImg, tempDir } from '../../../test/helpers';
import { scanSource } from './inventory';
import { tooRecentToTrust, untilTrustable, versionOf } from './version-token';
import { parseLibvirtDomain } from './libvirt';
import { parseVmx } from './vmware';

describe('libvirt domain XML', () => {
  it('reads name, uuid and every disk attribute; lists CD-ROMs without backing them up', () => {
    const xml = `<domain type='kvm'><name>db1</name><uuid>ABCD-1</uuid><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/db1.qcow2'/><target dev='vda' bus='virtio'/><serial>SN-42</serial></disk>
      <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='shared/quorum.raw'/><target dev='vdb'/><shareable/><readonly/><wwn>5000C50015EA71AD</wwn></disk>
      <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/iso/install.iso'/><target dev='sda'/><readonly/></disk>
      <disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vdc'/></disk>
    </devices></domain>`;
    const vm = parseLibvirtDomain('/etc/libvirt/qemu/db1.xml', Buffer.from(xml))!;
    expect(vm).toMatchObject({ name: 'db1', uuid: 'abcd-1' });
    expect(vm.slots).toMatchObject([
      { slot: 'vda', device: 'disk', format: 'qcow2', path: '/srv/db1.qcow2', serial: 'SN-42', shareable: false, backedUp: true },
      { slot: 'vdb', format: 'raw', target: 'shared/quorum.raw', path: '/etc/libvirt/qemu/shared/quorum.raw', shareable: true, readonly: true, wwn: '5000c50015ea71ad', backedUp: true },
      { slot: 'sda', device: 'cdrom', backedUp: false },
      { slot: 'vdc', backedUp: false, note: expect.stringMatching(/not a file/) },
    ]);
  });

  it('ignores well-formed XML that is not a domain', () => {
    expect(parseLibvirtDomain('/x/net.xml', Buffer.from('<network><name>default</name></network>'))).toBeUndefined();
  });
});

describe('VMware .vmx', () => {
  it('reads present disk slots of every bus, mode and sharing; skips absent ones', () => {
    const vm = parseVmx('/ds/app/app.vmx', Buffer.from([
      'displayName = "app"', 'uuid.bios = "56 4d 9b 1e 2a 3c 4d 5e-6f 70 81 92 a3 b4 c5 d6"',
      'scsi0:0.present = "TRUE"', 'scsi0:0.fileName = "app.vmdk"',
      'nvme0:1.present = "TRUE"', 'nvme0:1.fileName = "../shared/data.vmdk"', 'nvme0:1.mode = "independent-persistent"', 'nvme0:1.sharing = "multi-writer"',
      'sata0:0.present = "TRUE"', 'sata0:0.deviceType = "cdrom-image"', 'sata0:0.fileName = "tools.iso"',
      'ide0:0.present = "FALSE"', 'ide0:0.fileName = "old.vmdk"',
    ].join('\n')));
    expect(vm.uuid).toBe('564d9b1e-2a3c-4d5e-6f70-8192a3b4c5d6');
    expect(vm.slots).toMatchObject([
      { slot: 'nvme0:1', path: '/ds/shared/data.vmdk', mode: 'independent-persistent', sharing: 'multi-writer', shareable: true, backedUp: true },
      { slot: 'sata0:0', device: 'cdrom', backedUp: false },
      { slot: 'scsi0:0', path: '/ds/app/app.vmdk', format: 'vmdk', backedUp: true },
    ]);
  });
});

describe('scanSource', () => {
  it('gives a disk the config GUID, resolves parent chains, and marks disks used by several VMs', async () => {
    const root = await tempDir();
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(root, 'base.qcow2'), '2M');
    for (const name of ['a', 'b']) await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(root, `${name}.qcow2`));
    await fs.writeFile(path.join(root, 'quorum.raw'), Buffer.alloc(4096));
    const domain = (name: string) => `<domain><name>${name}</name><uuid>${name}</uuid><devices>
      <disk type='file' device='disk'><driver type='qcow2'/><source file='${name}.qcow2'/><target dev='vda'/></disk>
      <disk type='file' device='disk'><driver type='raw'/><source file='quorum.raw'/><target dev='vdb'/><shareable/><serial>Q1</serial></disk>
    </devices></domain>`;
    await fs.writeFile(path.join(root, 'a.xml'), domain('a'));
    await fs.writeFile(path.join(root, 'b.xml'), domain('b'));
    const inventory = await scanSource({ name: 's', type: 'libvirt', path: root });
    expect(inventory.warnings).toEqual([]);
    const base = inventory.disks.get(path.join(root, 'base.qcow2'))!;
    const quorum = inventory.disks.get(path.join(root, 'quorum.raw'))!;
    expect(base.identifier).toBe('path:base.qcow2');
    expect(quorum.identifier).toBe('serial:Q1');
    expect(inventory.disks.get(path.join(root, 'a.qcow2'))!.parent).toEqual({ pointer: 'base.qcow2', path: path.join(root, 'base.qcow2'), format: 'qcow2' });
    expect(inventory.usedBy.get(base.path)).toEqual(['a', 'b']);
    expect(inventory.usedBy.get(path.join(root, 'a.qcow2'))).toEqual(['a']);
    expect(inventory.vms[0].disks.map((d) => [path.basename(d.diskPath), d.via])).toEqual([['a.qcow2', 'attached'], ['base.qcow2', 'parent'], ['quorum.raw', 'attached']]);

    // the version token changes with any write
    const before = quorum.versionToken;
    await fs.appendFile(path.join(root, 'quorum.raw'), Buffer.alloc(512));
    const again = await scanSource({ name: 's', type: 'libvirt', path: root });
    expect(again.disks.get(quorum.path)!.versionToken).not.toBe(before);
  });
});

describe('parent links', () => {
  it('keys a parent reached through a symlinked folder by its canonical path', async () => {
    const root = await tempDir();
    await fs.mkdir(path.join(root, 'bases'));
    await fs.symlink('bases', path.join(root, 'current'));
    await qemuImg('create', '-q', '-f', 'qcow2', path.join(root, 'bases', 'base.qcow2'), '1M');
    await qemuImg('create', '-q', '-f', 'qcow2', '-b', 'current/base.qcow2', '-F', 'qcow2', path.join(root, 'child.qcow2'));
    await fs.writeFile(path.join(root, 'vm.xml'), `<domain><name>vm</name><uuid>u</uuid><devices><disk type='file' device='disk'><driver type='qcow2'/><source file='child.qcow2'/><target dev='vda'/></disk></devices></domain>`);
    const inventory = await scanSource({ name: 's', type: 'libvirt', path: root });
    const child = inventory.disks.get(path.join(root, 'child.qcow2'))!;
    expect(child.parent).toEqual({ pointer: 'current/base.qcow2', path: path.join(root, 'bases', 'base.qcow2'), format: 'qcow2' });
    expect(inventory.disks.has(child.parent!.path)).toBe(true);
  });
});

describe('namedPaths', () => {
  it('lists the files a config names, canonical where they exist, also for a VM whose config does not parse', async () => {
    const root = await tempDir();
    await fs.mkdir(path.join(root, 'images'));
    await fs.symlink('images', path.join(root, 'current'));
    await fs.writeFile(path.join(root, 'images', 'a.raw'), Buffer.alloc(4096));
    await fs.writeFile(path.join(root, 'images', 'shared.raw'), Buffer.alloc(4096));
    await fs.writeFile(path.join(root, 'ok.xml'), `<domain><name>ok</name><uuid>u1</uuid><devices>
      <disk type='file' device='disk'><driver type='raw'/><source file='current/a.raw'/><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><source file='/iso/install.iso'/><target dev='sda'/></disk></devices></domain>`);
    // a broken config still names its disks: one that exists (through a symlink), one that does not, escaped XML
    await fs.writeFile(path.join(root, 'broken.xml'), `<domain><name>broken</name><devices>
      <disk type='file' device='disk'><source file="current/shared.raw"/><target dev='vda'/></disk>
      <disk type='file' device='disk'><source file='gone &amp; lost.raw'/></disk></devics></domain>`);
    // a disk that fails after parsing: the config's own slots are listed
    await fs.writeFile(path.join(root, 'missing.xml'), `<domain><name>missing</name><uuid>u3</uuid><devices>
      <disk type='file' device='disk'><driver type='raw'/><source file='images/shared.raw'/><target dev='vda'/></disk>
      <disk type='file' device='disk'><driver type='raw'/><source file='nothing.raw'/><target dev='vdb'/></disk></devices></domain>`);
    const vmware = await tempDir();
    await fs.writeFile(path.join(vmware, 'shared.vmdk'), '');
    await fs.writeFile(path.join(vmware, 'bad.vmx'), 'displayName = "bad"\nscsi0:0.fileName = "shared.vmdk"\nsata0:1.FILENAME = "/abs/other.vmdk"\nthis is not a setting\n');

    const inventory = await scanSource({ name: 's', type: 'libvirt', path: root });
    const byName = Object.fromEntries(inventory.vms.map((vm) => [vm.name, vm]));
    expect(byName.ok.error).toBeUndefined();
    expect(byName.ok.namedPaths).toEqual([path.join(root, 'images', 'a.raw'), '/iso/install.iso']);
    expect(byName.broken.error).toMatch(/malformed XML/);
    expect(byName.broken.namedPaths).toEqual([path.join(root, 'images', 'shared.raw'), path.join(root, 'gone & lost.raw')]);
    expect(byName.missing.error).toMatch(/nothing\.raw: disk file not found/);
    expect(byName.missing.namedPaths).toEqual([path.join(root, 'images', 'shared.raw'), path.join(root, 'nothing.raw')]);
    const vmx = (await scanSource({ name: 'v', type: 'vmware', path: vmware })).vms[0];
    expect(vmx.error).toMatch(/malformed line 4/);
    expect(vmx.namedPaths).toEqual([path.join(vmware, 'shared.vmdk'), '/abs/other.vmdk']);
  });
});

describe('version tokens', () => {
  it('flags a version taken too soon after the last change as racily clean', async () => {
    const root = await tempDir();
    const file = path.join(root, 'disk.raw');
    await fs.writeFile(file, Buffer.alloc(4096));
    const future = new Date(Date.now() + 60_000);
    await fs.utimes(file, future, future);
    expect((await versionOf([file])).racilyClean).toBe(true);
    const past = new Date(Date.now() - 3_600_000);
    await fs.utimes(file, past, past);
    await new Promise((resolve) => setTimeout(resolve, 150)); // ctime, set by utimes, must age past the margin too
    expect((await versionOf([file])).racilyClean).toBe(false);
  });

  it('waits until a file just written can be trusted, and no longer than the margin for a timestamp in the future', async () => {
    const root = await tempDir();
    const file = path.join(root, 'disk.qcow2');
    await fs.writeFile(file, Buffer.alloc(4096));
    expect((await versionOf([file])).racilyClean).toBe(true);
    await untilTrustable([file]);
    expect((await versionOf([file])).racilyClean).toBe(false);
    const future = new Date(Date.now() + 3_600_000);
    await fs.utimes(file, future, future);
    const started = Date.now();
    await untilTrustable([file]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('gives whole-second timestamps a wider margin than fine ones', () => {
    const second = 1_000_000_000n;
    const at = 1_800_000_000n * second;
    expect(tooRecentToTrust({ mtimeNs: at - second + 1n, ctimeNs: at - second + 1n }, at)).toBe(false);
    expect(tooRecentToTrust({ mtimeNs: at - 50_000_000n, ctimeNs: at - 50_000_000n }, at)).toBe(true);
    // ext3, FAT, many exports: a write two seconds later can still carry the same stamp
    expect(tooRecentToTrust({ mtimeNs: at - 2n * second, ctimeNs: at - 2n * second }, at)).toBe(true);
    expect(tooRecentToTrust({ mtimeNs: at - 4n * second, ctimeNs: at - 4n * second }, at)).toBe(false);
    // the newer of mtime and ctime counts
    expect(tooRecentToTrust({ mtimeNs: at - 3600n * second, ctimeNs: at - 10_000_000n }, at)).toBe(true);
  });
});
