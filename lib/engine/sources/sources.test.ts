import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemuImg, tempDir } from '../../../test/helpers';
import { scanSource } from './inventory';
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
