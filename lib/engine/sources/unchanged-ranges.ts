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
  return hostRangesOf((await unchangedPieces(file, dirty)).pieces);
}

/** A clean piece of guest data: `length` bytes at guest offset `guest`, held at host offset `host`. */
export type CleanPiece = { guest: number; host: number; length: number };

/** The clean pieces of `file` (see unchangedHostRanges) and its cluster size. */
export async function unchangedPieces(file: string, dirty: ByteRange[]): Promise<{ clusterSize: number; pieces: CleanPiece[] }> {
  const handle = await fs.open(file, 'r');
  const { clusterBits } = await readQcow2Header(handle, file).finally(() => handle.close());
  return { clusterSize: 2 ** clusterBits, pieces: cleanPiecesOf(await qemuImgMap(file, 'qcow2'), dirty, 2 ** clusterBits) };
}

/** The host ranges of clean pieces: sorted, merged. */
export const hostRangesOf = (pieces: CleanPiece[]): ByteRange[] => merge(pieces.map((p) => ({ start: p.host, end: p.host + p.length })));

/** `clusterSize`: the file's. A guest write into a cluster QEMU allocates writes the whole host cluster (the rest
 *  copied or zeroed), while a dirty bitmap's granularity may be finer (QEMU's default is at most 64 KiB; clusters
 *  reach 2 MiB): each dirty range counts for the whole clusters it touches. */
export function unchangedRangesOf(map: Awaited<ReturnType<typeof qemuImgMap>>, dirty: ByteRange[], clusterSize = 1): ByteRange[] {
  return hostRangesOf(cleanPiecesOf(map, dirty, clusterSize));
}

function cleanPiecesOf(map: Awaited<ReturnType<typeof qemuImgMap>>, dirty: ByteRange[], clusterSize: number): CleanPiece[] {
  const sortedDirty = merge(dirty.filter((r) => r.end > r.start).map((r) => ({ start: Math.floor(r.start / clusterSize) * clusterSize, end: Math.ceil(r.end / clusterSize) * clusterSize })));
  const pieces: CleanPiece[] = [];
  const add = (extent: { start: number; offset: number }, from: number, to: number) => pieces.push({ guest: from, host: extent.offset + (from - extent.start), length: to - from });
  let d = 0;
  for (const extent of [...map].sort((a, b) => a.start - b.start)) {
    if (extent.depth !== 0 || !extent.data || extent.offset === undefined || extent.compressed || extent.length === 0) continue;
    const at0 = { start: extent.start, offset: extent.offset };
    const end = extent.start + extent.length;
    // The clean pieces of [extent.start, end): between the dirty ranges that overlap it.
    while (d < sortedDirty.length && sortedDirty[d].end <= extent.start) d++;
    let at = extent.start;
    for (let k = d; k < sortedDirty.length && sortedDirty[k].start < end; k++) {
      if (sortedDirty[k].start > at) add(at0, at, sortedDirty[k].start);
      at = Math.max(at, sortedDirty[k].end);
    }
    if (at < end) add(at0, at, end);
  }
  return pieces;
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
