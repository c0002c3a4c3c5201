import { XMLParser, XMLValidator } from 'fast-xml-parser';
import path from 'node:path';
import { InputError } from '../errors';
import type { DiskFormat, DiskSlot, VmConfig } from './types';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  isArray: (name) => name === 'disk',
});

type XmlNode = Record<string, unknown>;

/** Parses one libvirt domain XML; returns undefined for well-formed XML that is not a domain. */
export function parseLibvirtDomain(configPath: string, configBytes: Buffer): VmConfig | undefined {
  const text = configBytes.toString('utf8');
  // libvirt writes no DTD; a declared entity could turn a disk path into another VM's file or expand without end.
  if (/<!(DOCTYPE|ENTITY)/i.test(text)) {
    throw new InputError('XML with a DOCTYPE or ENTITY declaration is refused (libvirt domain XML has none; entities are never expanded)', { file: configPath });
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    throw new InputError(`malformed XML at line ${valid.err.line}: ${valid.err.msg}`, { file: configPath });
  }
  const doc = parser.parse(text) as XmlNode;
  const domain = doc.domain as XmlNode | undefined;
  if (!domain || typeof domain !== 'object') return undefined;
  const name = textOf(domain.name);
  if (!name) throw new InputError('domain has no <name>', { file: configPath });
  const uuid = textOf(domain.uuid)?.toLowerCase() ?? '';
  const devices = (domain.devices ?? {}) as XmlNode;
  const disks = (devices.disk ?? []) as XmlNode[];
  const slots = disks.map((disk, index) => parseDisk(disk, index, configPath));
  return { name, uuid, configPath, configBytes, slots };
}

function parseDisk(disk: XmlNode, index: number, configPath: string): DiskSlot {
  const type = String(disk['@type'] ?? 'file');
  const device = String(disk['@device'] ?? 'disk');
  const target = (disk.target ?? {}) as XmlNode;
  const slot = String(target['@dev'] ?? `disk${index}`);
  const source = (disk.source ?? {}) as XmlNode;
  const driver = (disk.driver ?? {}) as XmlNode;
  const file = source['@file'] === undefined ? undefined : String(source['@file']);
  const slotInfo: DiskSlot = {
    slot,
    device,
    target: file,
    path: file === undefined ? undefined : path.resolve(path.dirname(configPath), file),
    // No <driver type>: raw, as libvirt itself reads it. Guessing from content would let a guest that writes a
    // qcow2 header into its raw disk name any file (another VM's disk) as its backing file.
    format: driverFormat(driver['@type'], configPath, slot) ?? 'raw',
    shareable: 'shareable' in disk,
    readonly: 'readonly' in disk,
    serial: textOf(disk.serial),
    wwn: textOf(disk.wwn)?.toLowerCase(),
    backedUp: false,
  };
  if (device !== 'disk') return { ...slotInfo, note: `${device} is listed, not backed up` };
  if (type !== 'file') return { ...slotInfo, note: `disk type '${type}' is not a file; not backed up` };
  if (!file) throw new InputError(`disk ${slot} has no <source file=…>`, { file: configPath });
  return { ...slotInfo, backedUp: true };
}

function driverFormat(value: unknown, configPath: string, slot: string): DiskFormat | undefined {
  if (value === undefined) return undefined;
  const format = String(value);
  if (format === 'raw' || format === 'qcow2' || format === 'vmdk') return format;
  throw new InputError(`disk ${slot} has unsupported driver type '${format}'`, { file: configPath });
}

function textOf(node: unknown): string | undefined {
  if (node === undefined || node === null) return undefined;
  if (typeof node === 'object') {
    const text = (node as XmlNode)['#text'];
    return text === undefined ? undefined : String(text).trim() || undefined;
  }
  return String(node).trim() || undefined;
}

/**
 * The files a domain XML names (`file='…'` / `file="…"`), read leniently from its text: for a config too broken to
 * parse, so that the VM still counts as a user of the disks it names. Entities are decoded, never expanded.
 */
export function libvirtNamedFiles(configBytes: Buffer): string[] {
  const text = configBytes.toString('utf8');
  const files: string[] = [];
  for (const match of text.matchAll(/\bfile\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/g)) {
    const value = decodeXmlText(match[1] ?? match[2]);
    if (value) files.push(value);
  }
  return files;
}

const XML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function decodeXmlText(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (whole, ref: string) => {
    if (ref[0] !== '#') return XML_ENTITIES[ref.toLowerCase()] ?? whole;
    const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}

export const escapeXml = (value: string) => value.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/** A domain XML's `<disk>…</disk>` elements as text (their backing stores, nested in them, included). */
export function libvirtDiskBlocks(xml: string): string[] {
  return xml.match(DISK_ELEMENT) ?? [];
}

/** A domain XML with each `<disk>` element replaced by what `edit` makes of it (its target dev given). */
export function editLibvirtDisks(xml: string, edit: (block: string, dev: string | undefined) => string): string {
  return xml.replace(DISK_ELEMENT, (block) => edit(block, targetDevOf(block)));
}

/** A `<disk>` element's target dev (vda). */
export function targetDevOf(block: string): string | undefined {
  return /<target\b[^>]*\bdev=(['"])(.*?)\1/.exec(block)?.[2];
}

const DISK_ELEMENT = /<disk\b[\s\S]*?<\/disk>/g;

/** A libvirt domain with the `<source file=…>` of the given target devs replaced. */
export function rewriteLibvirtDisks(xml: string, pointers: Map<string, string>): string {
  return editLibvirtDisks(xml, (block, dev) => {
    const to = dev === undefined ? undefined : pointers.get(dev);
    if (to === undefined) return block;
    return block.replace(/(<source\b[^>]*\bfile=)(['"])(.*?)\2/, (_m, start: string, quote: string) => `${start}${quote}${escapeXml(to)}${quote}`);
  });
}

/**
 * A domain XML made into another VM: its own name and UUID (the first `<name>` and `<uuid>` of the domain, and the
 * SMBIOS system UUID of its `<sysinfo>`, which libvirt requires to match), no interface MAC address (libvirt
 * makes new ones when it defines it: two VMs with one MAC break the network), and no UEFI variables file: libvirt
 * names one after the new domain and fills it from the template at its first start (the original's file, shared,
 * would have its boot entries and secure-boot keys rewritten by the copy).
 */
export function renameLibvirtDomain(xml: string, name: string, uuid: string): string {
  const escaped = name.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  let out = xml.replace(/(<domain\b[^>]*>[\s\S]*?)<name>[^<]*<\/name>/, (_m, head: string) => `${head}<name>${escaped}</name>`);
  out = /<uuid>[^<]*<\/uuid>/.test(out)
    ? out.replace(/<uuid>[^<]*<\/uuid>/, `<uuid>${uuid}</uuid>`)
    : out.replace(/(<name>[^<]*<\/name>)/, `$1<uuid>${uuid}</uuid>`);
  // An SMBIOS system UUID must be the domain's (libvirt refuses the XML otherwise: "UUID mismatch").
  out = out.replace(/<sysinfo\b[\s\S]*?<\/sysinfo>/g, (block) => block.replace(/(<entry\s+name=(['"])uuid\2\s*>)[^<]*(<\/entry>)/g, `$1${uuid}$3`));
  out = out.replace(/<nvram\b([^>]*?)(?:\/>|>[\s\S]*?<\/nvram>)/g, (_m, attrs: string) => `<nvram${[...attrs.matchAll(/\s(?:template|templateFormat|format)=(['"]).*?\1/g)].map((a) => a[0]).join('')}/>`);
  return out.replace(/[ \t]*<mac\s+address=(['"])[^'"]*\1\s*\/>\n?/g, '');
}
