import fs from 'node:fs/promises';
import type { HeaderReader } from './detect';
import { InputError } from '../errors';

const VMDK_SPARSE_MAGIC = 0x564d444b; // "KDMV" little-endian
const MAX_DESCRIPTOR_BYTES = 1024 * 1024;

/**
 * A descriptor's bytes (a file, or the embedded region of a sparse extent) end at the first NUL, as qemu and
 * VMware read them. What follows is padding, or stale bytes: when qemu-img rewrites the CID with a shorter number
 * it leaves the old text's last bytes after the NUL (about 1 in 200 monolithicFlat files it converts).
 */
export function descriptorBytes(bytes: Buffer): Buffer {
  const end = bytes.indexOf(0);
  return end < 0 ? bytes : bytes.subarray(0, end);
}

export type VmdkExtent = {
  access: string; // RW, RDONLY, NOACCESS
  sectors: number;
  type: string; // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE…
  file?: string; // absent for ZERO extents
  offset: number;
};

export type VmdkDescriptor = {
  cid: string;
  parentCid: string;
  createType: string;
  parentFileNameHint?: string;
  extents: VmdkExtent[];
  ddbUuid?: string;
  longContentId?: string;
  /** True when the descriptor is embedded in a sparse extent (monolithicSparse, streamOptimized). */
  embedded: boolean;
};

/** "ffffffff" is VMware's "no parent" CID. */
export const VMDK_NO_PARENT_CID = 'ffffffff';

/** Byte offsets in a sparse extent's header (VMware's SparseExtentHeader), little-endian; sizes in sectors. */
const SPARSE_AT = { magic: 0, descriptorOffset: 28, descriptorSize: 36 } as const;
const SPARSE_HEADER_BYTES = SPARSE_AT.descriptorSize + 8;
const SECTOR_BYTES = 512;

/** The first bytes of a VMDK file (enough for a sparse header) and the file's size. */
async function readHead(fh: HeaderReader, file: string): Promise<{ head: Buffer; size: number }> {
  const { size } = await fh.stat();
  const head = await readExactly(fh, Math.min(size, SECTOR_BYTES), 0, file, 'header');
  return { head, size };
}

/** `length` bytes at `position`, all of them: a file cut short since its size was taken is refused, not read as zeros
 *  (a descriptor cut short could parse, naming fewer extents). */
async function readExactly(fh: HeaderReader, length: number, position: number, file: string, what: string): Promise<Buffer> {
  const bytes = Buffer.alloc(length);
  const { bytesRead } = await fh.read(bytes, 0, length, position);
  if (bytesRead < length) throw new InputError(`truncated VMDK ${what} (the file is shorter than it was a moment ago)`, { file });
  return bytes;
}

/** True when the bytes start a sparse extent (monolithicSparse, streamOptimized, a twoGbMaxExtentSparse extent). */
export function isVmdkSparse(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(SPARSE_AT.magic) === VMDK_SPARSE_MAGIC;
}

/** Where a sparse extent keeps its embedded descriptor, checked to lie inside the file. */
function embeddedDescriptorRegion(head: Buffer, fileSize: number, file: string): { offset: number; size: number } {
  if (head.length < SPARSE_HEADER_BYTES) throw new InputError('truncated VMDK sparse header', { file });
  const offset = Number(head.readBigUInt64LE(SPARSE_AT.descriptorOffset)) * SECTOR_BYTES;
  const size = Number(head.readBigUInt64LE(SPARSE_AT.descriptorSize)) * SECTOR_BYTES;
  if (offset === 0 || size === 0) {
    throw new InputError('VMDK sparse extent has no embedded descriptor (point at the descriptor file instead)', { file });
  }
  if (size > MAX_DESCRIPTOR_BYTES || offset + size > fileSize) {
    throw new InputError('truncated or corrupt VMDK embedded descriptor', { file });
  }
  return { offset, size };
}

/** Reads a VMDK: a text descriptor file, or a sparse file with the descriptor embedded after its header. */
export async function readVmdkDescriptor(fh: HeaderReader, file: string): Promise<VmdkDescriptor> {
  const { head, size } = await readHead(fh, file);
  if (isVmdkSparse(head)) {
    const embedded = embeddedDescriptorRegion(head, size, file);
    const region = await readExactly(fh, embedded.size, embedded.offset, file, 'embedded descriptor');
    return parseVmdkDescriptor(descriptorBytes(region).toString('utf8'), file, true);
  }
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'COWD') {
    throw new InputError('ESX COWD sparse VMDKs are not supported', { file });
  }
  if (size > MAX_DESCRIPTOR_BYTES) throw new InputError('not a VMDK descriptor (binary data, no sparse header)', { file });
  const text = descriptorBytes(await readExactly(fh, size, 0, file, 'descriptor'));
  if (text.some((byte) => byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d)) {
    throw new InputError('not a VMDK descriptor (binary data, no sparse header)', { file });
  }
  return parseVmdkDescriptor(text.toString('utf8'), file, false);
}

/** A descriptor's text with parentCID replaced and parentFileNameHint replaced, or added after parentCID. */
function withParent(text: string, parent: { hint: string; cid: string }): string {
  const result = text.replace(/^parentCID=.*$/m, `parentCID=${parent.cid}`);
  return /^parentFileNameHint=/m.test(result)
    ? result.replace(/^parentFileNameHint=.*$/m, `parentFileNameHint="${parent.hint}"`)
    : result.replace(/^(parentCID=.*)$/m, `$1\nparentFileNameHint="${parent.hint}"`);
}

/** Sets parentFileNameHint and parentCID of a VMDK (text descriptor or descriptor embedded in a sparse file). */
export async function setVmdkParent(file: string, parent: { hint: string; cid: string }): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    const { head, size: fileSize } = await readHead(handle, file);
    if (isVmdkSparse(head)) {
      // The embedded descriptor has a fixed region: the new text must fit in it, the rest stays NUL.
      const { offset, size } = embeddedDescriptorRegion(head, fileSize, file);
      const region = await readExactly(handle, size, offset, file, 'embedded descriptor');
      const text = Buffer.from(withParent(descriptorBytes(region).toString('utf8'), parent), 'utf8');
      if (text.length > size) throw new InputError('no room in the embedded VMDK descriptor for the new parent', { file });
      const out = Buffer.alloc(size);
      text.copy(out);
      await handle.write(out, 0, size, offset);
    } else {
      const text = Buffer.from(withParent(descriptorBytes(await handle.readFile()).toString('utf8'), parent), 'utf8');
      await handle.truncate(0);
      await handle.write(text, 0, text.length, 0);
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"((?:[^"\\]|\\.)*)"(?:\s+(\d+))?)?\s*$/;

function parseVmdkDescriptor(text: string, file: string, embedded: boolean): VmdkDescriptor {
  const fields = new Map<string, string>();
  const extents: VmdkExtent[] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const extent = EXTENT_LINE.exec(line);
    if (extent) {
      extents.push({
        access: extent[1], sectors: Number(extent[2]), type: extent[3].toUpperCase(),
        file: extent[4], offset: Number(extent[5] ?? 0),
      });
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw new InputError(`malformed VMDK descriptor line ${index + 1}: ${truncate(line)}`, { file });
    fields.set(line.slice(0, eq).trim().toLowerCase(), unquote(line.slice(eq + 1).trim()));
  }
  const cid = fields.get('cid');
  const createType = fields.get('createtype');
  // CIDs are 32-bit hex; some writers (qemu-img) drop leading zeros.
  if (!cid || !/^[0-9a-f]{1,8}$/i.test(cid)) throw new InputError('VMDK descriptor has no valid CID', { file });
  if (!createType) throw new InputError('VMDK descriptor has no createType', { file });
  if (extents.length === 0) throw new InputError('VMDK descriptor lists no extents', { file });
  for (const extent of extents) {
    if (extent.type !== 'ZERO' && !extent.file) throw new InputError(`VMDK ${extent.type} extent without a file name`, { file });
  }
  return {
    cid: normaliseCid(cid),
    parentCid: normaliseCid(fields.get('parentcid') ?? VMDK_NO_PARENT_CID),
    createType,
    parentFileNameHint: fields.get('parentfilenamehint') || undefined,
    extents,
    ddbUuid: fields.get('ddb.uuid') || undefined,
    longContentId: fields.get('ddb.longcontentid') || undefined,
    embedded,
  };
}

function normaliseCid(cid: string): string {
  return cid.toLowerCase().padStart(8, '0');
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

function truncate(line: string): string {
  return line.length > 60 ? `${line.slice(0, 57)}...` : line;
}
