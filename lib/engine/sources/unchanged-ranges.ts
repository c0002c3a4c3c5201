/**
 * Which bytes of a held qcow2 file a backup may take from the previous backup instead of reading them: the host
 * clusters that hold guest data this file itself maps (not a backing file's, not compressed) where the guest wrote
 * nothing since the previous backup's checkpoint. Everything else — header, L1/L2 and refcount tables, bitmaps,
 * free clusters, zero clusters, data the guest wrote — is read again. A guest cluster that was not written keeps its
 * host cluster (QEMU moves a cluster only by writing, discarding or copying it on write, each of which the dirty
 * bitmap records), so its bytes there are the ones the previous backup stored at the same offsets.
 */
import fs from 'node:fs/promises';
import { readQcow2Header } from '../formats/qcow2';
import { qemuImgMap } from './qemu-img-map';

/** Bytes `[start, end)`. */
export type ByteRange = { start: number; end: number };

/** The host ranges of `file` (qcow2, held still) that hold guest data the guest did not write outside `dirty` (guest
 *  ranges, any order): sorted, merged. */
export async function unchangedHostRanges(file: string, dirty: ByteRange[]): Promise<ByteRange[]> {
  const handle = await fs.open(file, 'r');
  const { clusterBits } = await readQcow2Header(handle, file).finally(() => handle.close());
  return unchangedRangesOf(await qemuImgMap(file, 'qcow2'), dirty, 2 ** clusterBits);
}

/** `clusterSize`: the file's. A guest write into a cluster QEMU allocates writes the whole host cluster (the rest
 *  copied or zeroed), while a dirty bitmap's granularity may be finer (QEMU's default is at most 64 KiB; clusters
 *  reach 2 MiB): each dirty range counts for the whole clusters it touches. */
export function unchangedRangesOf(map: Awaited<ReturnType<typeof qemuImgMap>>, dirty: ByteRange[], clusterSize = 1): ByteRange[] {
  const sortedDirty = merge(dirty.filter((r) => r.end > r.start).map((r) => ({ start: Math.floor(r.start / clusterSize) * clusterSize, end: Math.ceil(r.end / clusterSize) * clusterSize })));
  const ranges: ByteRange[] = [];
  let d = 0;
  for (const extent of [...map].sort((a, b) => a.start - b.start)) {
    if (extent.depth !== 0 || !extent.data || extent.offset === undefined || extent.compressed || extent.length === 0) continue;
    const end = extent.start + extent.length;
    // The clean pieces of [extent.start, end): between the dirty ranges that overlap it.
    while (d < sortedDirty.length && sortedDirty[d].end <= extent.start) d++;
    let at = extent.start;
    for (let k = d; k < sortedDirty.length && sortedDirty[k].start < end; k++) {
      if (sortedDirty[k].start > at) ranges.push({ start: extent.offset + (at - extent.start), end: extent.offset + (sortedDirty[k].start - extent.start) });
      at = Math.max(at, sortedDirty[k].end);
    }
    if (at < end) ranges.push({ start: extent.offset + (at - extent.start), end: extent.offset + extent.length });
  }
  return merge(ranges);
}

/** Ranges sorted by start, overlapping and touching ones joined, empty ones left out. */
export function merge(ranges: ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  const out: ByteRange[] = [];
  for (const range of sorted) {
    const last = out[out.length - 1];
    if (last && range.start <= last.end) last.end = Math.max(last.end, range.end);
    else out.push({ ...range });
  }
  return out;
}

/** The parts of `[start, end)` inside `ranges` (sorted, merged), found from `from` on (an index the caller keeps:
 *  blocks are asked in order). */
export function overlapOf(ranges: ByteRange[], start: number, end: number, from = 0): { pieces: ByteRange[]; next: number } {
  let i = from;
  while (i < ranges.length && ranges[i].end <= start) i++;
  const pieces: ByteRange[] = [];
  for (let k = i; k < ranges.length && ranges[k].start < end; k++) pieces.push({ start: Math.max(start, ranges[k].start), end: Math.min(end, ranges[k].end) });
  return { pieces, next: i };
}
