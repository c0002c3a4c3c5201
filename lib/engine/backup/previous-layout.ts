/**
 * The baseline's premise, checked against the previous backup itself: a guest cluster the guest did not write keeps
 * its host cluster. A file rewritten under the same inode by something that moves clusters without a guest write
 * (`qemu-img convert --bitmaps` copied back with cp: its bitmaps come along, its clusters do not stay) breaks it, and
 * the previous backup's bytes at those offsets are then other clusters. So the previous backup's own L1 and L2
 * tables (its stored bytes) must map every clean guest cluster to the host cluster the file maps it to now.
 */
import { BlockPool } from '../chunking/block-pool';
import type { StoredDiskFile } from '../repository/manifests';
import type { Repository } from '../repository/repository';
import { readBlock } from '../restore/read-block';
import type { CleanPiece } from '../sources/unchanged-ranges';
import { InputError } from '../errors';
import { QCOW2_ENTRY, readQcow2Header } from '../formats/qcow2';

/** Why the previous backup (`file`, stored with `blockSize`) does not map these clean pieces as the file does now;
 *  undefined when it maps every one of their clusters to the same host cluster. */
export async function movedSincePrevious(repo: Repository, file: StoredDiskFile, blockSize: number, pieces: CleanPiece[], clusterSize: number): Promise<string | undefined> {
  if (pieces.length === 0) return undefined;
  const pool = new BlockPool({ ids: repo.ids, blockSize, threads: 1, slots: 2, forRestore: true });
  const blocks = new Map<number, Buffer>();
  const block = async (n: number): Promise<Buffer> => {
    let bytes = blocks.get(n);
    if (!bytes) {
      const length = Math.max(0, Math.min(blockSize, file.size - n * blockSize));
      const id = n < file.blocks.length ? file.blocks[n] : null;
      if (!id || length === 0) bytes = Buffer.alloc(length);
      else {
        const slot = await pool.acquire(length);
        try {
          await readBlock(repo, pool, slot, id);
          bytes = Buffer.from(slot.bytes);
        } finally {
          pool.release(slot);
        }
      }
      if (blocks.size > 256) blocks.clear();
      blocks.set(n, bytes);
    }
    return bytes;
  };
  /** `length` bytes at `offset` of the previous backup's file (zeros past its end). */
  const read = async (offset: number, length: number): Promise<Buffer> => {
    const out = Buffer.alloc(length);
    for (let at = offset; at < offset + length; ) {
      const n = Math.floor(at / blockSize);
      const within = at - n * blockSize;
      const take = Math.min(blockSize - within, offset + length - at);
      (await block(n)).copy(out, at - offset, within, within + take);
      at += take;
    }
    return out;
  };
  try {
    // The previous backup's file read as a file (its header parsed as any qcow2's).
    const header = await readQcow2Header({
      stat: async () => ({ size: file.size }),
      read: async (buffer, offset, length, position) => {
        const bytes = await read(position, Math.max(0, Math.min(length, file.size - position)));
        bytes.copy(buffer, offset);
        return { bytesRead: bytes.length };
      },
    }, 'its previous backup').catch((err: Error) => {
      if (err instanceof InputError) return err;
      throw err;
    });
    if (header instanceof InputError) return `its previous backup is not a qcow2 file this tool reads (${header.message})`;
    if (2 ** header.clusterBits !== clusterSize) return 'its cluster size changed since its previous backup';
    if (header.extendedL2) return 'its previous backup has extended L2 entries';
    const { l1Size, l1TableOffset: l1Offset } = header;
    const entriesPerL2 = clusterSize / 8;
    const l1 = await read(l1Offset, 8 * l1Size);
    const l2Tables = new Map<number, Buffer>();
    for (const piece of pieces) {
      for (let cluster = Math.floor(piece.guest / clusterSize); cluster * clusterSize < piece.guest + piece.length; cluster++) {
        const guestAt = Math.max(cluster * clusterSize, piece.guest);
        const host = Math.floor((piece.host + (guestAt - piece.guest)) / clusterSize) * clusterSize;
        const l1Index = Math.floor(cluster / entriesPerL2);
        if (l1Index >= l1Size) return `guest cluster ${cluster} was past the end of its previous backup`;
        const l2Offset = Number(l1.readBigUInt64BE(8 * l1Index) & QCOW2_ENTRY.offsetMask);
        if (l2Offset === 0) return `guest cluster ${cluster} was not allocated at its previous backup`;
        let l2 = l2Tables.get(l2Offset);
        if (!l2) {
          if (l2Tables.size > 64) l2Tables.clear();
          l2Tables.set(l2Offset, (l2 = await read(l2Offset, clusterSize)));
        }
        const entry = l2.readBigUInt64BE(8 * (cluster % entriesPerL2));
        if ((entry & QCOW2_ENTRY.compressed) !== 0n || Number(entry & QCOW2_ENTRY.offsetMask) !== host) return `guest cluster ${cluster} moved since its previous backup (the file was rewritten)`;
      }
    }
    return undefined;
  } finally {
    await pool.close();
  }
}
