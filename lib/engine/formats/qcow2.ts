import fs from 'node:fs/promises';
import type { HeaderReader } from './detect';
import { InputError } from '../errors';

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const INCOMPAT_EXTERNAL_DATA_FILE = 1n << 2n;
/** qemu refuses longer backing file names. */
const MAX_BACKING_NAME_BYTES = 1023;

/** Byte offsets of the header fields this file reads or rewrites (qcow2 spec, "Header"), big-endian. */
const AT = {
  magic: 0, version: 4, backingFileOffset: 8, backingFileSize: 16, clusterBits: 20, size: 24, l1Size: 36, l1TableOffset: 40,
  incompatibleFeatures: 72, headerLength: 100,
} as const;
const INCOMPAT_EXTENDED_L2 = 1n << 4n;
/** An L1 or L2 entry's host offset bits, and an L2 entry's flag for a compressed cluster (qcow2 spec, "Cluster
 *  mapping"). */
export const QCOW2_ENTRY = { offsetMask: 0x00ff_ffff_ffff_fe00n, compressed: 1n << 62n } as const;
const V2_HEADER_BYTES = 72;
const V3_HEADER_BYTES = 104;

/** True when the bytes start a qcow2 image. */
export function isQcow2(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32BE(AT.magic) === QCOW2_MAGIC;
}

export type Qcow2Header = {
  version: 2 | 3;
  virtualSize: number;
  clusterBits: number;
  /** The L1 table: where it lies in the file and how many entries it has. */
  l1TableOffset: number;
  l1Size: number;
  /** Extended L2 entries (subclusters): 16 bytes an entry instead of 8. */
  extendedL2: boolean;
  backingFile?: string;
  backingFormat?: string;
};

/** Reads the qcow2 header, its backing file name and backing-format extension (qcow2 spec, "Header"). */
export async function readQcow2Header(fh: HeaderReader, file: string): Promise<Qcow2Header> {
  const { size } = await fh.stat();
  // What was read, not what the stat said: a file truncated since is read as truncated, not as zeros.
  const buffer = Buffer.alloc(Math.min(size, 64 * 1024));
  const head = buffer.subarray(0, (await fh.read(buffer, 0, buffer.length, 0)).bytesRead);
  if (head.length < V2_HEADER_BYTES) throw new InputError('truncated qcow2 header', { file });
  if (!isQcow2(head)) throw new InputError('not a qcow2 image (bad magic)', { file });
  const version = head.readUInt32BE(AT.version);
  if (version !== 2 && version !== 3) throw new InputError(`unsupported qcow2 version ${version}`, { file });
  const backingOffset = Number(head.readBigUInt64BE(AT.backingFileOffset));
  const backingSize = head.readUInt32BE(AT.backingFileSize);
  const clusterBits = head.readUInt32BE(AT.clusterBits);
  const virtualSize = Number(head.readBigUInt64BE(AT.size));
  if (clusterBits < 9 || clusterBits > 21) throw new InputError(`corrupt qcow2 header (cluster_bits ${clusterBits})`, { file });

  let headerLength = V2_HEADER_BYTES;
  let extendedL2 = false;
  if (version === 3) {
    if (head.length < V3_HEADER_BYTES) throw new InputError('truncated qcow2 v3 header', { file });
    const incompatible = head.readBigUInt64BE(AT.incompatibleFeatures);
    extendedL2 = (incompatible & INCOMPAT_EXTENDED_L2) !== 0n;
    if (incompatible & INCOMPAT_EXTERNAL_DATA_FILE) {
      throw new InputError('qcow2 images with an external data file are not supported', { file });
    }
    headerLength = head.readUInt32BE(AT.headerLength);
    if (headerLength < V3_HEADER_BYTES || headerLength > head.length) throw new InputError('corrupt qcow2 header length', { file });
  }

  let backingFormat: string | undefined;
  for (let at = headerLength; at + 8 <= head.length; ) {
    const type = head.readUInt32BE(at);
    const length = head.readUInt32BE(at + 4);
    if (type === EXT_END) break;
    if (at + 8 + length > head.length) throw new InputError('truncated qcow2 header extension', { file });
    if (type === EXT_BACKING_FORMAT) backingFormat = head.toString('latin1', at + 8, at + 8 + length);
    at += 8 + Math.ceil(length / 8) * 8;
  }

  let backingFile: string | undefined;
  if (backingOffset !== 0) {
    if (backingSize === 0 || backingSize > MAX_BACKING_NAME_BYTES || backingOffset + backingSize > size) {
      throw new InputError('corrupt qcow2 backing file name', { file });
    }
    const name = Buffer.alloc(backingSize);
    const { bytesRead } = await fh.read(name, 0, backingSize, backingOffset);
    if (bytesRead < backingSize) throw new InputError('truncated qcow2 backing file name', { file });
    // No path holds a NUL: the name would reach the scan's error as a path Node refuses, not as this image's fault.
    if (name.includes(0)) throw new InputError('corrupt qcow2 backing file name', { file });
    backingFile = name.toString('utf8');
  }
  const l1Size = head.readUInt32BE(AT.l1Size);
  const l1TableOffset = Number(head.readBigUInt64BE(AT.l1TableOffset));
  return { version, virtualSize, clusterBits, l1TableOffset, l1Size, extendedL2, backingFile, backingFormat };
}

/** Points a qcow2 image at another backing file (same format). The name must fit in the header cluster. */
export async function setQcow2BackingFile(file: string, backingFile: string): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    const head = Buffer.alloc(AT.clusterBits + 4); // magic through cluster_bits
    await handle.read(head, 0, head.length, 0);
    if (!isQcow2(head)) throw new InputError('not a qcow2 image', { file });
    const offset = Number(head.readBigUInt64BE(AT.backingFileOffset));
    const oldSize = head.readUInt32BE(AT.backingFileSize);
    const clusterSize = 2 ** head.readUInt32BE(AT.clusterBits);
    const name = Buffer.from(backingFile, 'utf8');
    if (offset === 0 || name.length > MAX_BACKING_NAME_BYTES || offset + Math.max(name.length, oldSize) > clusterSize) {
      throw new InputError(`no room in the qcow2 header for backing file name '${backingFile}'`, { file });
    }
    // qemu keeps the name last in the header cluster: past the old name up to the new one must be free.
    if (name.length > oldSize) {
      const tail = Buffer.alloc(name.length - oldSize);
      await handle.read(tail, 0, tail.length, offset + oldSize);
      if (tail.some((byte) => byte !== 0)) throw new InputError(`no room in the qcow2 header for backing file name '${backingFile}'`, { file });
    }
    const padded = Buffer.alloc(Math.max(name.length, oldSize));
    name.copy(padded);
    await handle.write(padded, 0, padded.length, offset);
    const size = Buffer.alloc(4);
    size.writeUInt32BE(name.length);
    await handle.write(size, 0, 4, AT.backingFileSize);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
