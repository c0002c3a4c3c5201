/**
 * The incremental read's claim on a real qcow2 file (qemu-io writes, no libvirt): the host ranges unchangedHostRanges
 * finds from the guest ranges written since the previous backup (as a dirty bitmap of the cluster's granularity
 * reports them), taken from the previous backup, give what a full read of the file stores. Writes, zero writes and
 * discards at random guest offsets: clusters allocated, freed and reused, L2 and refcount tables grown.
 */
import { execFile } from 'node:child_process';
import { SHA256_IDS } from '../repository/chunk-id';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { seededRandom, tempDir } from '../../../test/helpers';
import { BlockPool } from '../chunking/block-pool';
import { REUSE_ANYTHING } from '../gc/reuse-guard';
import { FsBlobStore } from '../repository/fs-blob-store';
import { Repository } from '../repository/repository';
import { type ByteRange, unchangedHostRanges } from '../sources/unchanged-ranges';
import type { VirtualDisk } from '../sources/virtual-disk';
import { type Baseline, newStoreClaims, storeDisk } from './store-disk';

const run = promisify(execFile);
const KiB = 1024;
const GUEST = 16 * 1024 * KiB;
/** QEMU's default dirty bitmap granularity: the cluster size, at least 4 KiB and at most 64 KiB
 *  (bdrv_get_default_bitmap_granularity); libvirt's checkpoints set none. */
const granularityOf = (cluster: number) => Math.min(64 * KiB, Math.max(4 * KiB, cluster));

const diskOf = (file: string): VirtualDisk => ({
  path: file, relativePath: path.basename(file), format: 'qcow2', identifier: file, versionToken: '', racilyClean: false, ownership: [], files: [file], logicalBytes: 0,
});

/** Random guest writes (data, zeros, discards) in one qemu-io run; answers the guest ranges written. */
async function guestWrites(random: () => number, file: string, count: number, CLUSTER: number): Promise<ByteRange[]> {
  const commands: string[] = [];
  const written: ByteRange[] = [];
  for (let k = 0; k < count; k++) {
    // 512-byte aligned (qemu-io's default request alignment), any length up to three clusters.
    const start = Math.floor(random() * (GUEST / 512)) * 512;
    const length = Math.min(GUEST - start, (1 + Math.floor(random() * ((random() < 0.5 ? 3 * CLUSTER : 64 * KiB) / 512))) * 512);
    const kind = random();
    if (kind < 0.7) commands.push(`write -P ${1 + Math.floor(random() * 254)} ${start} ${length}`);
    else if (kind < 0.85) commands.push(`write -z ${random() < 0.5 ? '-u ' : ''}${start} ${length}`);
    else commands.push(`discard ${start} ${length}`);
    written.push({ start, end: start + length });
  }
  await run('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]);
  return written;
}

const rounded = (ranges: ByteRange[], granularity: number) =>
  ranges.map((r) => ({ start: Math.floor(r.start / granularity) * granularity, end: Math.ceil(r.end / granularity) * granularity }));

describe('incremental reads of a qcow2 file (qemu-io)', () => {
  it('unchanged host ranges from dirty guest ranges (QEMU\'s default granularity) store what a full read stores', async () => {
    for (const [blockSize, CLUSTER] of [[4096, 64 * KiB], [65536, 64 * KiB], [65536, 2048 * KiB], [4096, 4 * KiB]]) {
      const pool = new BlockPool({ ids: SHA256_IDS, blockSize, threads: 1, slots: 4 });
      try {
        for (let seed = 1; seed <= 5; seed++) {
          const random = seededRandom(seed * 31 + blockSize);
          const work = await tempDir();
          const file = path.join(work, 'd.qcow2');
          await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, file, String(GUEST)]);
          await guestWrites(random, file, 20, CLUSTER);
          const repo = await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize });
          const store = (baseline?: Baseline) => storeDisk({ disk: diskOf(file), repo, pool, claims: newStoreClaims(), reuse: REUSE_ANYTHING, now: () => new Date(0), baseline });
          let previous = (await store()).manifest.files[0];
          for (let round = 0; round < 3; round++) {
            const dirty = rounded(await guestWrites(random, file, 1 + Math.floor(random() * 10), CLUSTER), granularityOf(CLUSTER));
            const unchanged = await unchangedHostRanges(file, dirty);
            const full = await storeDisk({ disk: diskOf(file), repo: await Repository.openOrInit(new FsBlobStore(await tempDir()), { blockSize }), pool, claims: newStoreClaims(), reuse: REUSE_ANYTHING, now: () => new Date(0) });
            const got = await store({ previous, unchanged });
            expect(got.manifest.files, `seed ${seed} round ${round} block size ${blockSize} cluster ${CLUSTER}`).toEqual(full.manifest.files);
                        previous = got.manifest.files[0];
          }
        }
      } finally {
        await pool.close();
      }
    }
  }, 120_000);
});
