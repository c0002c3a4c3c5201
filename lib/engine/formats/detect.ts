import { isQcow2 } from './qcow2';
import { isVmdkSparse } from './vmdk';

export type DiskFormat = 'raw' | 'qcow2' | 'vmdk';

/** What the format readers need of an open disk file: its size and positioned reads (a FileHandle is one). */
export type HeaderReader = {
  stat(): Promise<{ size: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
};

/**
 * The format a disk file's first bytes show: qcow2 and sparse VMDK by their magic, a VMDK text descriptor by its
 * leading comment and its .vmdk name; anything else is raw (a raw disk may hold any bytes).
 */
export async function detectDiskFormat(fh: HeaderReader, file: string): Promise<DiskFormat> {
  const magic = Buffer.alloc(4);
  const { bytesRead } = await fh.read(magic, 0, 4, 0);
  const head = magic.subarray(0, bytesRead);
  if (isQcow2(head)) return 'qcow2';
  if (isVmdkSparse(head)) return 'vmdk';
  if (head[0] === 0x23 /* '#' */ && file.toLowerCase().endsWith('.vmdk')) return 'vmdk';
  return 'raw';
}
