import type { FileHandle } from 'node:fs/promises';
import { InputError } from '../errors';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const INCOMPAT_EXTERNAL_DATA_FILE = 1n << 2n;

export type Qcow2Header = {
  version: 2 | 3;
  virtualSize: number;
  clusterBits: number;
  backingFile?: string;
  backingFormat?: string;
};

/** Reads the qcow2 header, its backing file name and backing-format extension (qcow2 spec, "Header"). */
export async function readQcow2Header(fh: FileHandle, file: string): Promise<Qcow2Header> {
  const { size } = await fh.stat();
  const head = Buffer.alloc(Math.min(size, 64 * 1024));
  await fh.read(head, 0, head.length, 0);
  if (head.length < 72) throw new InputError('truncated qcow2 header', { file });
  if (head.readUInt32BE(0) !== QCOW2_MAGIC) throw new InputError('not a qcow2 image (bad magic)', { file });
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new InputError(`unsupported qcow2 version ${version}`, { file });
  const backingOffset = Number(head.readBigUInt64BE(8));
  const backingSize = head.readUInt32BE(16);
  const clusterBits = head.readUInt32BE(20);
  const virtualSize = Number(head.readBigUInt64BE(24));
  if (clusterBits < 9 || clusterBits > 21) throw new InputError(`corrupt qcow2 header (cluster_bits ${clusterBits})`, { file });

  let headerLength = 72;
  if (version === 3) {
    if (head.length < 104) throw new InputError('truncated qcow2 v3 header', { file });
    const incompatible = head.readBigUInt64BE(72);
    if (incompatible & INCOMPAT_EXTERNAL_DATA_FILE) {
      throw new InputError('qcow2 images with an external data file are not supported', { file });
    }
    headerLength = head.readUInt32BE(100);
    if (headerLength < 104 || headerLength > head.length) throw new InputError('corrupt qcow2 header length', { file });
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
    if (backingSize === 0 || backingSize > 1023 || backingOffset + backingSize > size) {
      throw new InputError('corrupt qcow2 backing file name', { file });
    }
    const name = Buffer.alloc(backingSize);
    await fh.read(name, 0, backingSize, backingOffset);
    backingFile = name.toString('utf8');
  }
  return { version, virtualSize, clusterBits, backingFile, backingFormat };
}
