import path from 'node:path';
import { InputError } from '../errors';
import type { DiskSlot, VmConfig } from './types';

const SLOT_KEY = /^((?:scsi|sata|nvme|ide)\d+:\d+)\.(present|filename|devicetype|mode|sharing)$/i;
const CDROM_TYPES = new Set(['cdrom-image', 'atapi-cdrom', 'cdrom-raw']);

/** Parses a VMware .vmx file (`key = "value"` lines). */
export function parseVmx(configPath: string, configBytes: Buffer): VmConfig {
  if (configBytes.includes(0)) throw new InputError('not a .vmx file (binary data)', { file: configPath });
  const entries = new Map<string, string>();
  const lines = configBytes.toString('utf8').split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('.encoding')) continue;
    const match = /^([A-Za-z0-9_.:-]+)\s*=\s*"([^"]*)"\s*$/.exec(line);
    if (!match) throw new InputError(`malformed line ${index + 1}: expected key = "value"`, { file: configPath });
    entries.set(match[1].toLowerCase(), match[2]);
  }
  const name = entries.get('displayname');
  if (!name) throw new InputError('no displayName', { file: configPath });

  const bySlot = new Map<string, Map<string, string>>();
  for (const [key, value] of entries) {
    const match = SLOT_KEY.exec(key);
    if (!match) continue;
    const slot = match[1].toLowerCase();
    if (!bySlot.has(slot)) bySlot.set(slot, new Map());
    bySlot.get(slot)!.set(match[2].toLowerCase(), value);
  }
  const slots: DiskSlot[] = [];
  for (const [slot, fields] of [...bySlot].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))) {
    if (fields.get('present')?.toLowerCase() !== 'true') continue;
    const fileName = fields.get('filename');
    const deviceType = fields.get('devicetype')?.toLowerCase();
    const isCdrom = deviceType !== undefined && CDROM_TYPES.has(deviceType);
    const isDisk = !isCdrom && fileName !== undefined && fileName.toLowerCase().endsWith('.vmdk');
    slots.push({
      slot,
      device: isCdrom ? 'cdrom' : isDisk ? 'disk' : deviceType ?? 'unknown',
      target: fileName,
      path: fileName ? path.resolve(path.dirname(configPath), fileName) : undefined,
      format: isDisk ? 'vmdk' : undefined,
      shareable: fields.get('sharing')?.toLowerCase() === 'multi-writer',
      readonly: false,
      mode: fields.get('mode'),
      sharing: fields.get('sharing'),
      backedUp: isDisk,
      note: isDisk ? undefined : `${isCdrom ? 'cdrom' : deviceType ?? 'device'} is listed, not backed up`,
    });
  }
  return { name, uuid: normaliseBiosUuid(entries.get('uuid.bios')), configPath, configBytes, slots };
}

/** "56 4d 12 … 9a-bc …" → "564d12…-…" in the usual 8-4-4-4-12 form. */
function normaliseBiosUuid(value: string | undefined): string {
  const hex = (value ?? '').replace(/[^0-9a-f]/gi, '').toLowerCase();
  if (hex.length !== 32) return '';
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The files a .vmx names (`….fileName = "…"`), read leniently: for a config too broken to parse (see libvirtNamedFiles). */
export function vmxNamedFiles(configBytes: Buffer): string[] {
  const files: string[] = [];
  for (const match of configBytes.toString('utf8').matchAll(/^\s*[A-Za-z0-9_.:-]*\.filename\s*=\s*"([^"]*)"/gim)) {
    if (match[1]) files.push(match[1]);
  }
  return files;
}

/** A .vmx with the `<slot>.fileName` of the given slots replaced. */
export function rewriteVmxDisks(vmx: string, pointers: Map<string, string>): string {
  return vmx.replace(/^([A-Za-z]+\d+:\d+)\.fileName(\s*=\s*)"[^"]*"/gim, (line, slot: string, eq: string) => {
    const to = pointers.get(slot.toLowerCase());
    return to === undefined ? line : `${slot}.fileName${eq}"${to.replace(/"/g, '|22')}"`;
  });
}
