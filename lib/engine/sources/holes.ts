/**
 * Where a disk file has holes (never written, reading as zeros), so that a backup neither reads nor hashes them: a
 * 20 GiB sparse raw disk holding 100 MiB is read as 100 MiB. Asked of `qemu-img map -f raw` (the file's own
 * allocation, SEEK_DATA/SEEK_HOLE, whatever format it holds), and only for a file the filesystem says is sparse:
 * a dense file (a pool's small overlays) costs no process.
 */
import { execFile } from 'node:child_process';

/** A file is asked about only when this much of it is unallocated: below, a map costs more than it saves. */
const SPARSE_ENOUGH = 8 * 1024 * 1024;
const MAP_TIMEOUT_MS = 120_000;

type Extent = { start: number; length: number; data: boolean };

/**
 * The indexes of the blocks of `blockSize` that lie wholly in holes of the file (the last block, shorter, counts
 * when it does). Empty when the file is not sparse, or when the map cannot be had: then everything is read, as
 * before — a hole missed costs a read, never a wrong backup.
 */
export async function holeBlocks(file: string, size: number, allocatedBytes: number, blockSize: number): Promise<Set<number>> {
  const holes = new Set<number>();
  if (size - allocatedBytes < SPARSE_ENOUGH) return holes;
  const extents = await mapOf(file).catch(() => undefined);
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

function mapOf(file: string): Promise<Extent[]> {
  return new Promise((resolve, reject) => {
    // -U: the file may be open in a running VM (a backing file held still for its backup): only its map is read.
    execFile('qemu-img', ['map', '-U', '--output=json', '-f', 'raw', file], { timeout: MAP_TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024 }, (err, stdout) => {
      if (err) return reject(err);
      try {
        const parsed = JSON.parse(stdout) as unknown;
        if (!Array.isArray(parsed)) return reject(new Error('qemu-img map: not a list'));
        resolve(parsed.map((e: { start: unknown; length: unknown; data: unknown }) => {
          if (!Number.isSafeInteger(e.start) || !Number.isSafeInteger(e.length) || typeof e.data !== 'boolean') throw new Error('qemu-img map: bad extent');
          return { start: e.start as number, length: e.length as number, data: e.data };
        }));
      } catch (parseError) {
        reject(parseError);
      }
    });
  });
}
