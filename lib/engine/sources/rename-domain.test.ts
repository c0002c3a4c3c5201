import { describe, expect, it } from 'vitest';
import { parseLibvirtDomain, renameLibvirtDomain } from './libvirt';

const xml = `<domain type='kvm'>
  <name>web</name>
  <uuid>7d1c2a3e-0000-4000-8000-000000000001</uuid>
  <metadata><app:info xmlns:app='x'><name>not the domain's</name></app:info></metadata>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/v/web.qcow2'/><target dev='vda'/></disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>
`;

describe('renameLibvirtDomain', () => {
  it('gives the domain its new name and UUID, drops its MACs, and changes nothing else', () => {
    const out = renameLibvirtDomain(xml, 'web-copy & co', '11111111-2222-4333-8444-555555555555');
    const parsed = parseLibvirtDomain('/x.xml', Buffer.from(out))!;
    expect(parsed).toMatchObject({ name: 'web-copy & co', uuid: '11111111-2222-4333-8444-555555555555' });
    expect(out).not.toContain('52:54:00');
    expect(out).toContain("<name>not the domain's</name>");
    expect(out.replace(/<name>[^<]*<\/name>\n  <uuid>[^<]*<\/uuid>/, '')).toBe(xml.replace(/<name>web<\/name>\n  <uuid>[^<]*<\/uuid>/, '').replace("      <mac address='52:54:00:12:34:56'/>\n", ''));
  });

  it('adds a UUID to a domain that had none', () => {
    const out = renameLibvirtDomain("<domain><name>a</name><devices/></domain>", 'b', '11111111-2222-4333-8444-555555555555');
    expect(parseLibvirtDomain('/x.xml', Buffer.from(out))).toMatchObject({ name: 'b', uuid: '11111111-2222-4333-8444-555555555555' });
  });

  it('gives an SMBIOS system UUID the new UUID too (libvirt refuses a mismatch)', () => {
    const out = renameLibvirtDomain("<domain><name>a</name><uuid>old</uuid><sysinfo type='smbios'><system><entry name='serial'>old</entry><entry name='uuid'>old</entry></system></sysinfo></domain>", 'b', 'new');
    expect(out).toBe("<domain><name>b</name><uuid>new</uuid><sysinfo type='smbios'><system><entry name='serial'>old</entry><entry name='uuid'>new</entry></system></sysinfo></domain>");
  });
  it('gives the copy no UEFI variables file of the original (libvirt makes its own from the template)', () => {
    const os = (nvram: string) => `<domain><name>a</name><uuid>old</uuid><os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>${nvram}</os></domain>`;
    const copy = (nvram: string) => renameLibvirtDomain(os(nvram), 'b', 'new');
    expect(copy("<nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/a_VARS.fd</nvram>")).toBe(os("<nvram template='/usr/share/OVMF/OVMF_VARS.fd'/>").replace('<name>a</name><uuid>old</uuid>', '<name>b</name><uuid>new</uuid>'));
    expect(copy('<nvram>/var/lib/libvirt/qemu/nvram/a_VARS.fd</nvram>')).toContain('<nvram/>');
    // libvirt 8.5's form: the file in a <source>
    const sourced = copy("<nvram type='file' template=\"/t.fd\" templateFormat='raw'><source file='/var/lib/libvirt/qemu/nvram/a_VARS.fd'/></nvram>");
    expect(sourced).toContain("<nvram template=\"/t.fd\" templateFormat='raw'/>");
    expect(sourced).not.toContain('a_VARS');
  });
});
