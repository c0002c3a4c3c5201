import { BlockPool, type Slot } from '../chunking/block-pool';
import { InputError, fileError } from '../errors';
import { type ChunkId, zeroBlockId } from '../repository/chunk-id';
import { MANIFEST_FORMAT_VERSION, type StoredDiskFile, type StoredDiskManifest } from '../repository/manifests';
import { SEAL_OVERHEAD } from '../repository/encryption';
import { type Repository, diskDigest } from '../repository/repository';
import { openDiskFile } from '../sources/files';
import { holeBlocks } from '../sources/holes';
import { type ByteRange, overlapOf } from '../sources/unchanged-ranges';
import { readBlock } from '../restore/read-block';
import { versionOf } from '../sources/version-token';
import type { VirtualDisk } from '../sources/virtual-disk';
import type { ReuseGuard } from '../gc/reuse-guard';

export type StoredDiskResult = {
  manifest: StoredDiskManifest;
  bytesRead: number;
  /** Bytes taken from the previous backup (a baseline's unchanged ranges) instead of being read. */
  bytesReused: number;
  /** The chunks this store put (earlier attempts' too: they were really written), for the run to credit. */
  wrote: ChunkId[];
};

/**
 * A run's chunks and stored disks by id and digest: the check-and-put under way (or done) that the first store to
 * meet one started. Another store that meets the same chunk or digest waits for it, and fails when it fails:
 * nothing names a chunk whose put may still fail, and each is written (and its bytes counted) once.
 */
export type StoreClaims = {
  /** chunk id → its store, settled when the chunk is in the repository (bytes written: `written`) */
  chunks: Map<ChunkId, Promise<unknown>>;
  /** content digest → its store, settled when the stored disk is in the repository. Settled claims hold nothing
   *  (a pool's run meets 10,000 stored disks): a disk with the same digest has the same content, its own manifest. */
  disks: Map<string, Promise<unknown>>;
  /** What this run wrote: the bytes of each chunk it put, and the stored disks it put. The backup credits each to
   *  the first VM, in order, whose image names it (stores of several disks run at once: whichever put it is luck). */
  written: Map<ChunkId, number>;
  newDisks: Set<string>;
};

/** What a claim is once its store succeeded: one settled promise for all. */
const STORED: Promise<unknown> = Promise.resolve();

export function newStoreClaims(): StoreClaims {
  return { chunks: new Map(), disks: new Map(), written: new Map(), newDisks: new Set() };
}

export type StoreDiskOptions = {
  disk: VirtualDisk;
  repo: Repository;
  pool: BlockPool;
  /** What this run stored and is storing (shared by every disk store of the run, which may run at once). */
  claims: StoreClaims;
  /** Whether a chunk or stored disk the repository holds may be named (a collection may be removing it). */
  reuse: ReuseGuard;
  onBytes?: (bytes: number) => void;
  signal?: AbortSignal;
  now: () => Date;
  /** A held single-file disk whose previous backup, and what has not changed since, are known: those bytes are
   *  taken from the previous backup instead of being read. */
  baseline?: Baseline;
};

/** What a backup of a held qcow2 file may take from its previous backup instead of reading it. */
export type Baseline = {
  /** The previous backup's stored file (the same file: its clusters at the same offsets). */
  previous: StoredDiskFile;
  /** The file's byte ranges (sorted, merged) whose bytes are the ones `previous` holds at the same offsets. */
  unchanged: ByteRange[];
};

const MAX_READ_ATTEMPTS = 3;

/** Reads a disk, stores the blocks the repository lacks, and returns its manifest. Re-reads a disk that changed meanwhile. */
export async function storeDisk(options: StoreDiskOptions): Promise<StoredDiskResult> {
  const { disk } = options;
  // Bytes of earlier attempts were really read and written: they count.
  let earlierRead = 0;
  const earlierWrote: ChunkId[] = [];
  for (let attempt = 1; ; attempt++) {
    const before = await versionOf(disk.files, disk.vmdk?.cid);
    // A baseline holds for the file as it was held: once it changed, everything is read.
    const result = await readOnce(attempt === 1 ? options : { ...options, baseline: undefined });
    const after = await versionOf(disk.files, disk.vmdk?.cid);
    if (before.versionToken === after.versionToken) {
      disk.versionToken = after.versionToken;
      disk.logicalBytes = after.logicalBytes;
      disk.racilyClean = after.racilyClean;
      disk.ownership = after.ownership;
      return { ...result, bytesRead: result.bytesRead + earlierRead, wrote: [...earlierWrote, ...result.wrote] };
    }
    earlierRead += result.bytesRead;
    earlierWrote.push(...result.wrote);
    if (attempt >= MAX_READ_ATTEMPTS) {
      throw new InputError(`disk changed while it was being read (${attempt} attempts); not backed up`, { file: disk.path });
    }
  }
}

async function readOnce(options: StoreDiskOptions): Promise<StoredDiskResult> {
  const { disk, repo, pool, claims, reuse, signal } = options;
  const blockSize = repo.config.blockSize;
  const baseline = options.baseline && disk.files.length === 1 && options.baseline.previous.blocks.length > 0 ? options.baseline : undefined;
  // Decodes previous blocks that are taken in part (made on the first one).
  let previousPool: BlockPool | undefined;
  let bytesReused = 0;
  let bytesRead = 0;
  const wrote: ChunkId[] = [];
  const files: StoredDiskFile[] = [];
  const digestInput: { size: number; blockIds: ChunkId[] }[] = [];

  const storeBlock = async (slot: Slot): Promise<{ id: ChunkId; zero: boolean }> => {
    try {
      const block = await pool.hash(slot);
      if (block.zero) return block;
      const known = claims.chunks.get(block.id);
      if (known) {
        await known; // put by another store of this run, perhaps still: this disk's manifest waits for it
        return block;
      }
      // Claimed before any await: a store of another disk meeting the same block waits for this one.
      const claim = (async () => {
        if (await repo.hasChunk(block.id)) {
          if (await reuse.mayReuseChunk(block.id)) return 0;
        } else await reuse.beforePutChunk(block.id);
        // Sealed by the pool's worker in an encrypted repository (off this thread); counted as the plain frame, as stores' sizes are.
        const encoded = await pool.encode(slot, block.id);
        await repo.putEncodedChunk(block.id, encoded, { sealed: pool.seals });
        return encoded.length - (pool.seals ? SEAL_OVERHEAD : 0);
      })();
      claims.chunks.set(block.id, claim);
      try {
        const written = await claim;
        claims.chunks.set(block.id, STORED);
        if (written > 0) {
          claims.written.set(block.id, written);
          wrote.push(block.id);
        }
      } catch (err) {
        claims.chunks.delete(block.id); // not stored: a later store tries again
        throw err;
      }
      return block;
    } finally {
      pool.release(slot);
    }
  };

  try {
    for (const file of disk.files) {
      const handle = await openDiskFile(file);
      try {
        const { size, blocks: allocated } = await handle.stat();
        // Results by block index; the promises in flight are bounded by the pool's slots, not by the disk's size.
        const blockCount = Math.ceil(size / blockSize);
        const ids = new Array<ChunkId>(blockCount);
        const zero = new Uint8Array(blockCount);
        // Blocks wholly in holes of a sparse file read as zeros: neither read nor hashed (the version token taken
        // around this read catches a write into a hole meanwhile).
        const holes = await holeBlocks(file, size, allocated * 512, blockSize);
        const inFlight = new Set<Promise<void>>();
        let failure: unknown;
        let cursor = 0;
        const previousInto = async (target: Uint8Array, id: ChunkId | null, parts: ByteRange[], offset: number): Promise<boolean> => {
          if (id === null) {
            for (const part of parts) target.fill(0, part.start - offset, part.end - offset);
            return true;
          }
          previousPool ??= new BlockPool({ ids: repo.ids, blockSize, forRestore: true, threads: 1, slots: 2 });
          const decoded = await previousPool.acquire(target.length);
          try {
            await readBlock(repo, previousPool, decoded, id);
            for (const part of parts) target.set(decoded.bytes.subarray(part.start - offset, part.end - offset), part.start - offset);
            return true;
          } finally {
            previousPool.release(decoded);
          }
        };
        try {
          for (let index = 0; index < blockCount && failure === undefined; index++) {
            signal?.throwIfAborted();
            const offset = index * blockSize;
            const length = Math.min(blockSize, size - offset);
            if (holes.has(index)) {
              ids[index] = zeroBlockId(repo.ids, length);
              zero[index] = 1;
              options.onBytes?.(length);
              continue;
            }
            // The parts of this block the previous backup holds unchanged, when it stored a block of the same length here.
            let kept: ByteRange[] = [];
            let previous: ChunkId | null | undefined;
            if (baseline) {
              const found = overlapOf(baseline.unchanged, offset, offset + length, cursor);
              cursor = found.next;
              previous = previousBlock(baseline.previous, index, length, blockSize);
              if (previous !== undefined) kept = found.pieces;
            }
            const keptBytes = kept.reduce((sum, piece) => sum + piece.end - piece.start, 0);
            if (keptBytes === length) {
              ids[index] = previous ?? zeroBlockId(repo.ids, length);
              zero[index] = previous === null ? 1 : 0;
              bytesReused += length;
              options.onBytes?.(length);
              continue;
            }
            // Waits for a free slot: the pool's slot count bounds memory and work in flight.
            const slot = await pool.acquire(length);
            if (keptBytes > 0) {
              // The kept parts from the previous block; one that cannot be read is read from the file like the rest.
              const taken = await previousInto(slot.bytes, previous!, kept, offset).catch(() => false);
              if (!taken) kept = [];
              else bytesReused += keptBytes;
            }
            let got = 0;
            try {
              for (const part of complement(kept, offset, offset + length)) {
                const { bytesRead: n } = await handle.read(slot.bytes, part.start - offset, part.end - part.start, part.start);
                got += n;
                if (n !== part.end - part.start) break;
              }
            } catch (err) {
              pool.release(slot);
              throw fileError(file, err);
            }
            const wanted = length - (kept.length ? keptBytes : 0);
            if (got !== wanted) {
              pool.release(slot);
              throw new InputError('disk file shrank while it was being read', { file });
            }
            bytesRead += wanted;
            options.onBytes?.(length);
            const task: Promise<void> = storeBlock(slot).then(
              (block) => { ids[index] = block.id; zero[index] = block.zero ? 1 : 0; },
              (err) => { failure ??= err; },
            ).finally(() => inFlight.delete(task));
            inFlight.add(task);
          }
        } finally {
          await Promise.all(inFlight); // nothing of this disk is still running when we return or throw
        }
        if (failure !== undefined) throw failure;
        files.push({ size, blocks: ids.map((id, index) => (zero[index] ? null : id)) });
        digestInput.push({ size, blockIds: ids });
      } finally {
        await handle.close();
      }
    }
  } finally {
    await previousPool?.close();
  }

  const digest = diskDigest(digestInput);
  // Content only: two disks with the same bytes share this manifest and keep their own names (in their images).
  const manifest: StoredDiskManifest = { formatVersion: MANIFEST_FORMAT_VERSION, digest, blockSize, logicalBytes: bytesRead + bytesReused, files, createdAt: options.now().toISOString() };
  const known = claims.disks.get(digest);
  if (known) {
    await known; // stored by another store of this run, perhaps still
    return { manifest, bytesRead, bytesReused, wrote };
  }
  const claim = (async () => {
    if (await repo.hasStoredDisk(digest)) {
      if (await reuse.mayReuseDisk(digest)) {
        // The one stored must name what was just read: one damaged (edited, torn, unreadable) is replaced by this one.
        const stored = await repo.getStoredDisk(digest).catch(() => undefined);
        if (stored && sameContent(stored, manifest)) return stored;
      }
    } else await reuse.beforePutDisk(digest);
    await repo.putStoredDisk(manifest);
    claims.newDisks.add(digest);
    return manifest;
  })();
  claims.disks.set(digest, claim);
  try {
    const stored = await claim;
    claims.disks.set(digest, STORED);
    return { manifest: stored, bytesRead, bytesReused, wrote };
  } catch (err) {
    claims.disks.delete(digest);
    throw err;
  }
}

/** The previous backup's block at `index` (null: all zeros) when it has the same length there; undefined else. */
function previousBlock(previous: StoredDiskFile, index: number, length: number, blockSize: number): ChunkId | null | undefined {
  if (index >= previous.blocks.length || Math.min(blockSize, previous.size - index * blockSize) !== length) return undefined;
  return previous.blocks[index];
}

/** The parts of `[start, end)` outside `ranges` (sorted, inside it). */
function complement(ranges: ByteRange[], start: number, end: number): ByteRange[] {
  const out: ByteRange[] = [];
  let at = start;
  for (const range of ranges) {
    if (range.start > at) out.push({ start: at, end: range.start });
    at = Math.max(at, range.end);
  }
  if (at < end) out.push({ start: at, end });
  return out;
}

/** Whether two stored-disk manifests name the same blocks (compared block by block: a large disk has a million). */
function sameContent(a: StoredDiskManifest, b: StoredDiskManifest): boolean {
  if (a.blockSize !== b.blockSize || a.files.length !== b.files.length) return false;
  return a.files.every((file, i) => {
    const other = b.files[i];
    return file.size === other.size && file.blocks.length === other.blocks.length && file.blocks.every((id, j) => id === other.blocks[j]);
  });
}
