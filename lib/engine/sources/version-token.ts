import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { fileError } from '../errors';
import { openDiskFile } from './files';

export type DiskVersion = { versionToken: string; logicalBytes: number; racilyClean: boolean };

/**
 * How much older than the moment of its stat a file's newest timestamp (mtime or ctime) must be for its version
 * to be trusted later ("racily clean" otherwise, as git says). A write in the same timestamp tick as the stat
 * leaves size and times unchanged; one tick later it cannot. Timestamps with a sub-second part come from a
 * filesystem with a tick of at most 10 ms (the kernel's coarse clock): 100 ms covers it and a file server's clock
 * running slightly behind. Whole-second timestamps (ext3, ext4 with 128-byte inodes, FAT's 2 s, many network
 * exports) get 3 s: two seconds of granularity and one of skew.
 */
export const RACY_MARGIN_NS = { fineTimestamps: 100_000_000n, wholeSecondTimestamps: 3_000_000_000n } as const;

/** True when a file's timestamps are too recent, at the moment `statAtNs` (ns since the epoch), to trust later. */
export function tooRecentToTrust(stat: Pick<BigIntStats, 'mtimeNs' | 'ctimeNs'>, statAtNs: bigint): boolean {
  const newest = stat.mtimeNs > stat.ctimeNs ? stat.mtimeNs : stat.ctimeNs;
  const wholeSeconds = stat.mtimeNs % 1_000_000_000n === 0n && stat.ctimeNs % 1_000_000_000n === 0n;
  return newest + (wholeSeconds ? RACY_MARGIN_NS.wholeSecondTimestamps : RACY_MARGIN_NS.fineTimestamps) > statAtNs;
}

/**
 * Version token: the VMDK CID where there is one, plus inode, size, mtime and ctime (ns) of every file, each
 * taken by fstat of the opened file (on NFS the open revalidates cached attributes). `racilyClean` when any file
 * changed too shortly before its stat for the token to be trusted (see RACY_MARGIN_NS).
 */
export async function versionOf(files: string[], cid?: string, opened?: { file: string; stat: BigIntStats; statAtNs: bigint }): Promise<DiskVersion> {
  const hash = createHash('sha256');
  let logicalBytes = 0;
  let racilyClean = false;
  for (const file of files) {
    // The main file, where the caller holds it open already: the fstat it made of it (see openDiskFileAndStat).
    let { stat, statAtNs } = opened?.file === file ? opened : { stat: undefined as BigIntStats | undefined, statAtNs: 0n };
    if (!stat) {
      const handle = await openDiskFile(file);
      // Taken before the stat: the moment can only be earlier than the stat, never flatter the file's age.
      statAtNs = BigInt(Date.now()) * 1_000_000n;
      try {
        stat = await handle.stat({ bigint: true });
      } catch (err) {
        throw fileError(file, err);
      } finally {
        await handle.close();
      }
    }
    hash.update(`${file}\0${stat.ino}\0${stat.size}\0${stat.mtimeNs}\0${stat.ctimeNs}\n`);
    logicalBytes += Number(stat.size);
    if (tooRecentToTrust(stat, statAtNs)) racilyClean = true;
  }
  const stamp = hash.digest('hex').slice(0, 20);
  return { versionToken: cid ? `cid:${cid}/${stamp}` : stamp, logicalBytes, racilyClean };
}
