import type { BlockPool, Slot } from '../chunking/block-pool';
import { InputError, fileError } from '../errors';
import type { ChunkId } from '../repository/chunk-id';
import { MANIFEST_FORMAT_VERSION, type StoredDiskFile, type StoredDiskManifest } from '../repository/manifests';
import { type Repository, diskDigest } from '../repository/repository';
import { openDiskFile } from '../sources/files';
import { versionOf } from '../sources/version-token';
import type { VirtualDisk } from '../sources/virtual-disk';

export type StoredDiskResult = {
  manifest: StoredDiskManifest;
  /** False when a stored disk with the same content digest already existed: the new read is only referenced. */
  isNew: boolean;
  bytesRead: number;
  bytesWritten: number;
};

export type StoreDiskOptions = {
  disk: VirtualDisk;
  repo: Repository;
  pool: BlockPool;
  /** Chunk ids known to be in the repository; shared across one run so each id is checked once. */
  knownChunks: Set<string>;
  onBytes?: (bytes: number) => void;
  signal?: AbortSignal;
  now: () => Date;
};

const MAX_READ_ATTEMPTS = 3;

/** Reads a disk, stores the blocks the repository lacks, and returns its manifest. Re-reads a disk that changed meanwhile. */
export async function storeDisk(options: StoreDiskOptions): Promise<StoredDiskResult> {
  const { disk } = options;
  // Bytes of earlier attempts were really read and written: they count.
  let earlierRead = 0;
  let earlierWritten = 0;
  for (let attempt = 1; ; attempt++) {
    const before = await versionOf(disk.files, disk.vmdk?.cid);
    const result = await readOnce(options);
    const after = await versionOf(disk.files, disk.vmdk?.cid);
    if (before.versionToken === after.versionToken) {
      disk.versionToken = after.versionToken;
      disk.logicalBytes = after.logicalBytes;
      disk.racilyClean = after.racilyClean;
      disk.ownership = after.ownership;
      return { ...result, bytesRead: result.bytesRead + earlierRead, bytesWritten: result.bytesWritten + earlierWritten };
    }
    earlierRead += result.bytesRead;
    earlierWritten += result.bytesWritten;
    if (attempt >= MAX_READ_ATTEMPTS) {
      throw new InputError(`disk changed while it was being read (${attempt} attempts); not backed up`, { file: disk.path });
    }
  }
}

async function readOnce(options: StoreDiskOptions): Promise<StoredDiskResult> {
  const { disk, repo, pool, knownChunks, signal } = options;
  const blockSize = repo.config.blockSize;
  let bytesRead = 0;
  let bytesWritten = 0;
  const files: StoredDiskFile[] = [];
  const digestInput: { size: number; blockIds: ChunkId[] }[] = [];

  const storeBlock = async (slot: Slot): Promise<{ id: ChunkId; zero: boolean }> => {
    try {
      const block = await pool.hash(slot);
      if (block.zero || knownChunks.has(block.id) || (await repo.hasChunk(block.id))) {
        if (!block.zero) knownChunks.add(block.id);
        return block;
      }
      knownChunks.add(block.id); // claimed: an identical block later in this run is not stored twice
      try {
        const encoded = await pool.encode(slot);
        await repo.putEncodedChunk(block.id, encoded);
        bytesWritten += encoded.length;
      } catch (err) {
        knownChunks.delete(block.id);
        throw err;
      }
      return block;
    } finally {
      pool.release(slot);
    }
  };

  for (const file of disk.files) {
    const handle = await openDiskFile(file);
    try {
      const { size } = await handle.stat();
      // Results by block index; the promises in flight are bounded by the pool's slots, not by the disk's size.
      const blockCount = Math.ceil(size / blockSize);
      const ids = new Array<ChunkId>(blockCount);
      const zero = new Uint8Array(blockCount);
      const inFlight = new Set<Promise<void>>();
      let failure: unknown;
      try {
        for (let index = 0; index < blockCount && failure === undefined; index++) {
          signal?.throwIfAborted();
          const offset = index * blockSize;
          const length = Math.min(blockSize, size - offset);
          // Waits for a free slot: the pool's slot count bounds memory and work in flight.
          const slot = await pool.acquire(length);
          let got: number;
          try {
            ({ bytesRead: got } = await handle.read(slot.bytes, 0, length, offset));
          } catch (err) {
            pool.release(slot);
            throw fileError(file, err);
          }
          if (got !== length) {
            pool.release(slot);
            throw new InputError('disk file shrank while it was being read', { file });
          }
          bytesRead += length;
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

  const digest = diskDigest(digestInput);
  // Content only: two disks with the same bytes share this manifest and keep their own names (in their images).
  const manifest: StoredDiskManifest = { formatVersion: MANIFEST_FORMAT_VERSION, digest, blockSize, logicalBytes: bytesRead, files, createdAt: options.now().toISOString() };
  if (await repo.hasStoredDisk(digest)) return { manifest: await repo.getStoredDisk(digest), isNew: false, bytesRead, bytesWritten };
  await repo.putStoredDisk(manifest);
  return { manifest, isNew: true, bytesRead, bytesWritten };
}
