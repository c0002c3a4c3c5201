/**
 * Where a disk file has holes (never written, reading as zeros), so that a backup neither reads nor hashes them: a
 * 20 GiB sparse raw disk holding 100 MiB is read as 100 MiB. Asked of `qemu-img map -f raw` (the file's own
 * allocation, SEEK_DATA/SEEK_HOLE, whatever format it holds), and only for a file the filesystem says is sparse:
 * a dense file (a pool's small overlays) costs no process.
 */
import { qemuImgMap } from './qemu-img-map';

/** A file is asked about only when this much of it is unallocated: below, a map costs more than it saves. */
const SPARSE_ENOUGH = 8 * 1024 * 1024;

/**
 * The indexes of the blocks of `blockSize` that lie wholly in holes of the file (the last block, shorter, counts
 * when it does). Empty when the file is not sparse, or when the map cannot be had: then everything is read, as
 * before — a hole missed costs a read, never a wrong backup.
 */
export async function holeBlocks(file: string, size: number, allocatedBytes: number, blockSize: number): Promise<Set<number>> {
  const holes = new Set<number>();
  if (size - allocatedBytes < SPARSE_ENOUGH) return holes;
  const extents = await qemuImgMap(file, 'raw').catch(() => undefined);
  if (!extents) return holes;
  for (const extent of extents) {
    if (extent.data) continue;
    const end = Math.min(extent.start + extent.length, size);
    const first = Math.ceil(extent.start / blockSize);
    // A block is skipped only if it ends inside the hole (or the hole reaches the end of the file).
    for (let index = first; index * blockSize < end; index++) {
      if (Math.min((index + 1) * blockSize, size) <= end) holes.add(index);
    }
  }
  return holes;
}
