import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { openDiskFileAndStat } from './files';

/** A disk file's permission bits and owner, as its stat showed them (the image names them; a restore sets them). */
export type FileOwnership = { mode: number; uid: number; gid: number };

export type DiskVersion = { versionToken: string; logicalBytes: number; racilyClean: boolean; /** per file, in order */ ownership: FileOwnership[] };

/**
 * How much older than the moment of its stat a file's newest timestamp (mtime or ctime) must be for its version
 * to be trusted later ("racily clean" otherwise, as git says). A write in the same timestamp tick as the stat
 * leaves size and times unchanged; one tick later it cannot. Timestamps with a sub-second part come from a
 * filesystem with a tick of at most 10 ms (the kernel's coarse clock): 100 ms covers it and a file server's clock
 * running slightly behind. Whole-second timestamps (ext3, ext4 with 128-byte inodes, FAT's 2 s, many network
 * exports) get 3 s: two seconds of granularity and one of skew.
 */
export const RACY_MARGIN_NS = { fineTimestamps: 100_000_000n, wholeSecondTimestamps: 3_000_000_000n } as const;

/** The moment (ns since the epoch) from which a file's timestamps are old enough to trust (see RACY_MARGIN_NS). */
function trustableFromNs(stat: Pick<BigIntStats, 'mtimeNs' | 'ctimeNs'>): bigint {
  const newest = stat.mtimeNs > stat.ctimeNs ? stat.mtimeNs : stat.ctimeNs;
  const wholeSeconds = stat.mtimeNs % 1_000_000_000n === 0n && stat.ctimeNs % 1_000_000_000n === 0n;
  return newest + (wholeSeconds ? RACY_MARGIN_NS.wholeSecondTimestamps : RACY_MARGIN_NS.fineTimestamps);
}

/** True when a file's timestamps are too recent, at the moment `statAtNs` (ns since the epoch), to trust later. */
export function tooRecentToTrust(stat: Pick<BigIntStats, 'mtimeNs' | 'ctimeNs'>, statAtNs: bigint): boolean {
  return trustableFromNs(stat) > statAtNs;
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
  const ownership: FileOwnership[] = [];
  for (const file of files) {
    // The main file, where the caller holds it open already: the fstat it made of it; any other: opened for its own.
    const { stat, statAtNs } = opened?.file === file ? opened : await statOfOpened(file);
    hash.update(`${file}\0${stat.ino}\0${stat.size}\0${stat.mtimeNs}\0${stat.ctimeNs}\n`);
    logicalBytes += Number(stat.size);
    ownership.push({ mode: Number(stat.mode) & 0o777, uid: Number(stat.uid), gid: Number(stat.gid) });
    if (tooRecentToTrust(stat, statAtNs)) racilyClean = true;
  }
  const stamp = hash.digest('hex').slice(0, 20);
  return { versionToken: cid ? `cid:${cid}/${stamp}` : stamp, logicalBytes, racilyClean, ownership };
}

async function statOfOpened(file: string): Promise<{ stat: BigIntStats; statAtNs: bigint }> {
  const { handle, stat, statAtNs } = await openDiskFileAndStat(file);
  await handle.close();
  return { stat, statAtNs };
}

/** Waits until none of these files is too recently changed to trust (tooRecentToTrust): one this process just wrote
 *  (a bitmap added to a shut-off domain's disk) is then recorded with a token a later backup can trust. */
export async function untilTrustable(files: string[]): Promise<void> {
  for (const file of files) {
    // Twice at most: a timestamp in the future (a clock set back) is waited for once, no longer than the margin.
    for (let attempt = 0; attempt < 2; attempt++) {
      const { stat, statAtNs } = await statOfOpened(file);
      const from = trustableFromNs(stat);
      if (from <= statAtNs) break;
      const margin = from - (stat.mtimeNs > stat.ctimeNs ? stat.mtimeNs : stat.ctimeNs);
      const waitNs = from - statAtNs < margin ? from - statAtNs : margin;
      await new Promise((resolve) => setTimeout(resolve, Number(waitNs / 1_000_000n) + 1));
    }
  }
}
