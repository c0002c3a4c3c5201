/**
 * Verify: re-reads and re-hashes what backup images need, each chunk once per run however many images name it.
 * A chunk that is missing or does not match its id is damage: a corrupt one is moved aside (kept under damaged/
 * for inspection, out of chunks/), so that the next backup that meets the same content finds it absent and
 * stores it again, which heals every image that names it.
 */
import { BlockPool } from '../chunking/block-pool';
import { RepositoryError } from '../errors';
import { type ChunkId, chunkKey, shortId, zeroBlockId } from '../repository/chunk-id';
import { type Repository, diskDigest, storedDiskKey } from '../repository/repository';
import { readBlock } from '../restore/read-block';
import { rateThrottle } from './throttle';

export type VerifyImage = { backupId: string; vm: string };
export type VerifiedImage = VerifyImage & { status: 'ok' | 'failed'; problems: string[] };
export type VerifyProgress = { imagesDone: number; imagesTotal: number; checkedChunks: number; bytesRead: number };

export type VerifyReport = {
  checkedChunks: number;
  /** Bytes of stored frames read. */
  bytesRead: number;
  /** Damaged chunks and the images (of this run) that need them. */
  damaged: { chunk: string; images: string[]; problem: 'missing' | 'corrupt' | 'unreadable' }[];
  /** Stored disks some image needs that are missing, damaged, or name a damaged chunk: the fast path must not offer them. */
  damagedDisks: string[];
  images: VerifiedImage[];
  /** Images not reached because the run's read budget was spent (verified first by the next run: oldest first). */
  deferred: number;
};

/** Chunks read at once: the pool's slots (its worker threads decode and re-hash). */
const CHUNKS_AT_ONCE = 16;

export async function verifyImages(options: {
  repo: Repository; images: VerifyImage[]; onProgress?: (p: VerifyProgress) => void; signal?: AbortSignal; threads?: number;
  /** An I/O budget: no image is begun once this many bytes of chunks were read (the one under way is finished). */
  budgetBytes?: number;
  /** An I/O rate cap: chunks are read at no more than this many bytes per second on average. */
  maxBytesPerSecond?: number;
  /** Called, and awaited, as soon as a stored disk is found damaged (before the run goes on): the keys found damaged
   *  (its own when its manifest is, and its damaged chunks), so that no backup reuses them from then on. */
  onDamaged?: (damage: { digest: string; keys: string[] }) => Promise<void>;
  /** Each image's result as soon as it is known (recorded as the run goes: a run stopped part-way keeps them). */
  onImage?: (image: VerifiedImage) => Promise<void>;
}): Promise<VerifyReport> {
  const { repo, signal } = options;
  const report: VerifyReport = { checkedChunks: 0, bytesRead: 0, damaged: [], damagedDisks: [], images: [], deferred: 0 };
  /** Waits until reading `length` more bytes keeps the average since the start at or under the cap (ends when stopped). */
  const throttle = rateThrottle(options.maxBytesPerSecond, signal);
  /** Each chunk once: its problem, or null when it verified. */
  const chunkResults = new Map<string, Promise<VerifyReport['damaged'][number]['problem'] | null>>();
  /** Each stored disk once: its problems (empty: whole). */
  const diskResults = new Map<string, Promise<{ problems: string[]; chunks: string[] }>>();
  const pool = new BlockPool({ ids: repo.ids, sealer: repo.chunkSealer, blockSize: repo.config.blockSize, slots: CHUNKS_AT_ONCE, threads: options.threads, forRestore: true });
  const imagesOfChunk = new Map<string, Set<string>>();

  const checkChunk = (id: ChunkId, length: number, digest: string) => {
    let result = chunkResults.get(id);
    if (!result) {
      result = (async () => {
        await throttle(length);
        const slot = await pool.acquire(length);
        try {
          await readBlock(repo, pool, slot, id);
          report.bytesRead += length;
          return null;
        } catch (err) {
          const message = (err as Error).message;
          if (/is missing/.test(message)) return 'missing' as const;
          if (err instanceof RepositoryError && /corrupt/.test(message)) {
            // Told before it is moved: no backup that starts from here on reuses it.
            await options.onDamaged?.({ digest, keys: [chunkKey(id)] });
            await repo.moveAside(chunkKey(id)).catch(() => undefined);
            return 'corrupt' as const;
          }
          return 'unreadable' as const;
        } finally {
          pool.release(slot);
          report.checkedChunks++;
        }
      })();
      chunkResults.set(id, result);
    }
    return result;
  };

  const checkDisk = (digest: string) => {
    let result = diskResults.get(digest);
    if (!result) {
      result = (async () => {
        let manifest;
        try {
          manifest = await repo.getStoredDisk(digest);
        } catch (err) {
          const missing = /is missing/.test((err as Error).message);
          // Unreadable: out of the way, so that the next backup of that content stores a whole one.
          if (!missing && err instanceof RepositoryError) await repo.moveAside(storedDiskKey(digest)).catch(() => undefined);
          await options.onDamaged?.({ digest, keys: [storedDiskKey(digest)] });
          return { problems: [`stored disk ${shortId(digest)}: ${(err as Error).message}`], chunks: [] };
        }
        const problems: string[] = [];
        const ids: string[] = [];
        const blockSize = manifest.blockSize;
        // Its digest must follow from its blocks: a manifest edited or torn names other content than it claims.
        const zeroIds = new Map<number, ChunkId>();
        const digestInput = manifest.files.map((file) => ({
          size: file.size,
          blockIds: file.blocks.map((id, index) => {
            if (id) return id as ChunkId;
            const length = Math.min(blockSize, file.size - index * blockSize);
            if (!zeroIds.has(length)) zeroIds.set(length, zeroBlockId(repo.ids, length));
            return zeroIds.get(length)!;
          }),
        }));
        const manifestDamaged = diskDigest(digestInput) !== digest;
        if (manifestDamaged) problems.push(`stored disk ${shortId(digest)} does not match its digest`);
        const pending: Promise<void>[] = [];
        for (const file of manifest.files) {
          for (const [index, id] of file.blocks.entries()) {
            if (!id) continue;
            signal?.throwIfAborted();
            ids.push(id);
            const length = Math.min(blockSize, file.size - index * blockSize);
            pending.push(checkChunk(id as ChunkId, length, digest).then((problem) => {
              if (problem) problems.push(`chunk ${shortId(id)} is ${problem}`);
            }));
            if (pending.length >= CHUNKS_AT_ONCE * 4) await Promise.all(pending.splice(0));
          }
        }
        await Promise.all(pending);
        if (manifestDamaged) await repo.moveAside(storedDiskKey(digest)).catch(() => undefined);
        if (problems.length) {
          const bad: string[] = [];
          for (const id of new Set(ids)) if ((await chunkResults.get(id)) !== null) bad.push(chunkKey(id as ChunkId));
          await options.onDamaged?.({ digest, keys: [...(manifestDamaged ? [storedDiskKey(digest)] : []), ...bad] });
        }
        return { problems, chunks: ids };
      })();
      diskResults.set(digest, result);
    }
    return result;
  };

  try {
    for (const [index, image] of options.images.entries()) {
      signal?.throwIfAborted();
      if (options.budgetBytes !== undefined && report.bytesRead >= options.budgetBytes) {
        report.deferred = options.images.length - index;
        break;
      }
      const problems: string[] = [];
      try {
        const manifest = await repo.getBackupImage(image.backupId);
        const digests = [...new Set(manifest.disks.flatMap((disk) => [disk.digest, ...(disk.parent?.digest ? [disk.parent.digest] : [])]))];
        for (const digest of digests) {
          const disk = await checkDisk(digest);
          problems.push(...disk.problems);
          for (const id of disk.chunks) {
            if ((await chunkResults.get(id)) === null) continue;
            if (!imagesOfChunk.has(id)) imagesOfChunk.set(id, new Set());
            imagesOfChunk.get(id)!.add(image.backupId);
          }
          if (disk.problems.length && !report.damagedDisks.includes(digest)) report.damagedDisks.push(digest);
        }
      } catch (err) {
        if (signal?.aborted) throw err;
        problems.push((err as Error).message);
      }
      const verified: VerifiedImage = { ...image, status: problems.length ? 'failed' : 'ok', problems: [...new Set(problems)] };
      report.images.push(verified);
      await options.onImage?.(verified);
      options.onProgress?.({ imagesDone: index + 1, imagesTotal: options.images.length, checkedChunks: report.checkedChunks, bytesRead: report.bytesRead });
    }
  } finally {
    await pool.close();
  }
  for (const [id, images] of imagesOfChunk) {
    report.damaged.push({ chunk: id, images: [...images].sort(), problem: (await chunkResults.get(id))! });
  }
  report.damaged.sort((a, b) => (a.chunk < b.chunk ? -1 : 1));
  return report;
}

