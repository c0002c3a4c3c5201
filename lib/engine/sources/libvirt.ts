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
    format: driverFormat(driver['@type'], configPath, slot),
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
