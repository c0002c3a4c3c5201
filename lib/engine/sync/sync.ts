/**
 * `vmdedup sync --to <repository>`: copies backup images into another repository (an off-site copy), with only the
 * stored disks and blocks it lacks, every block checked against its id as it is read. Rules: README.md beside this file.
 */
import { BlockPool } from '../chunking/block-pool';
import { RepositoryError, RepositoryStorageError } from '../errors';
import { type ChunkId, chunkIdOf, shortId, zeroBlockId } from '../repository/chunk-id';
import { packedImageId } from '../repository/image-pack';
import { type BackupDiskEntry, type BackupImageManifest, MANIFEST_FORMAT_VERSION, type StoredDiskManifest } from '../repository/manifests';
import { type Repository, diskDigest, newBackupImageId } from '../repository/repository';

/**
 * What earlier syncs from this source to this target copied (a cache kept beside the catalog: lost, it is rebuilt from
 * the copies' `origin` and by reading again). `images`: source image id → its copy's id; `disks`: source stored-disk
 * digest → the target's (they differ where the block ids do: an encrypted target).
 */
export type SyncState = { sourceId: string; targetId: string; images: Record<string, string>; disks: Record<string, string> };

export type SyncReport = {
  images: { copied: number; alreadyCopied: number; failed: { id: string; vm?: string; error: string }[] };
  storedDisks: { copied: number; reused: number };
  chunks: { copied: number; reused: number; bytes: number };
  protectedMarks: number;
  /** With `check`: the copies looked over, the blocks of theirs the copy lacked, and those copied again. */
  checked?: { images: number; storedDisks: number; blocksMissing: number; blocksRepaired: number; unrepairable: { id: string; error: string }[] };
};

export type SyncProgress = { imagesDone: number; imagesTotal: number; chunksCopied: number; bytesCopied: number };

/** Images per pack written into the target (a backup's batch size). */
const IMAGES_PER_PACK = 256;
/** Blocks of one stored disk copied at once (each holds a slot of the pool until its put resolves). */
const BLOCKS_AT_ONCE = 16;

export async function syncRepository(options: {
  source: Repository;
  target: Repository;
  state?: SyncState;
  /** Called after each pack of copies is durable in the target, with the state to keep. */
  onState?: (state: SyncState) => Promise<void>;
  onProgress?: (progress: SyncProgress) => void;
  signal?: AbortSignal;
  threads?: number;
  /**
   * Also look over what earlier syncs copied: every block the copy's backups name is listed in the copy, and one it
   * lacks (removed, moved aside by a verify of the copy) is copied again from the source. One listing of the copy's
   * blocks and a read of each copied backup's manifests.
   */
  check?: boolean;
}): Promise<{ report: SyncReport; state: SyncState }> {
  const { source, target, signal } = options;
  if (source.config.id === target.config.id) throw new RepositoryError(`${target.store.location} is the same repository as ${source.store.location} (${source.config.id}): nothing to copy to`);
  if (source.config.blockSize !== target.config.blockSize) {
    throw new RepositoryError(`${target.store.location} cuts disks into blocks of ${target.config.blockSize} bytes, ${source.store.location} of ${source.config.blockSize}: a copy needs the same block size`);
  }
  if (source.encrypted && !target.encrypted) throw new RepositoryError(`${source.store.location} is encrypted and ${target.store.location} is not: a copy would hold its backups in the clear (create the target with --encrypt)`);
  const state: SyncState = options.state?.sourceId === source.config.id && options.state.targetId === target.config.id
    ? { ...options.state, images: { ...options.state.images }, disks: { ...options.state.disks } }
    : { sourceId: source.config.id, targetId: target.config.id, images: {}, disks: {} };
  const report: SyncReport = { images: { copied: 0, alreadyCopied: 0, failed: [] }, storedDisks: { copied: 0, reused: 0 }, chunks: { copied: 0, reused: 0, bytes: 0 }, protectedMarks: 0 };

  // Which source images have a copy: the state, checked against the target's listing; copies the state does not know
  // (it was lost, or another host synced) are found by their origin.
  const held = new Set(await target.backupImageIds());
  for (const [from, to] of Object.entries(state.images)) if (!held.has(to)) delete state.images[from];
  const known = new Set(Object.values(state.images));
  for (const id of held) {
    if (known.has(id)) continue;
    signal?.throwIfAborted();
    const copy = await target.getBackupImage(id).catch(() => undefined);
    if (copy?.origin?.repositoryId === source.config.id) state.images[copy.origin.imageId] = id;
  }
  const sourceIds = await source.backupImageIds();
  const todo = sourceIds.filter((id) => !state.images[id]);
  report.images.alreadyCopied = sourceIds.length - todo.length;
  const protectedIds = new Set(await source.protectedIds());

  const sameIds = source.ids.algorithm === 'sha256' && target.ids.algorithm === 'sha256';
  const pool = todo.length || options.check ? new BlockPool({ ids: source.ids, blockSize: source.config.blockSize, forRestore: true, slots: BLOCKS_AT_ONCE * 2, threads: options.threads }) : undefined;
  const chunkCopies = new Map<string, Promise<ChunkId>>();
  const diskCopies = new Map<string, Promise<string>>();
  let imagesDone = 0;
  const progress = () => options.onProgress?.({ imagesDone, imagesTotal: todo.length, chunksCopied: report.chunks.copied, bytesCopied: report.chunks.bytes });

  /** The block's id in the target, its frame copied there when the target lacks it (read and checked first). */
  const copyChunk = (id: ChunkId, length: number): Promise<ChunkId> => {
    let copying = chunkCopies.get(id);
    if (!copying) {
      copying = (async () => {
        if (sameIds && (await target.hasChunk(id))) {
          report.chunks.reused++;
          return id;
        }
        const slot = await pool!.acquire(length);
        try {
          const frame = pool!.frameSpace(slot);
          const storedLength = await source.readEncodedChunkInto(id, frame);
          if (!(await pool!.decode(slot, storedLength, id))) throw new RepositoryError(`chunk ${shortId(id)} is corrupt in ${source.store.location}: content does not match its id`);
          const targetId = sameIds ? id : chunkIdOf(target.ids, slot.bytes);
          if (!sameIds && (await target.hasChunk(targetId))) {
            report.chunks.reused++;
            return targetId;
          }
          // The frame as stored in the source, now known to decode to the block: compression does not depend on keys.
          await target.putEncodedChunk(targetId, frame.subarray(0, storedLength));
          report.chunks.copied++;
          report.chunks.bytes += storedLength;
          return targetId;
        } finally {
          pool!.release(slot);
        }
      })();
      chunkCopies.set(id, copying);
      // A failed copy is not remembered: another image naming the block tries again.
      copying.catch(() => chunkCopies.delete(id));
    }
    return copying;
  };

  /** The target's digest for a source stored disk, copied (with the blocks the target lacks) when it has none. */
  const copyStoredDisk = (digest: string): Promise<string> => {
    let copying = diskCopies.get(digest);
    if (!copying) {
      copying = (async () => {
        const mapped = state.disks[digest] ?? (sameIds ? digest : undefined);
        if (mapped && (await target.hasStoredDisk(mapped))) {
          report.storedDisks.reused++;
          return mapped;
        }
        const manifest = await source.getStoredDisk(digest);
        checkDigest(manifest, source);
        const files: StoredDiskManifest['files'] = [];
        for (const file of manifest.files) {
          const blocks: (ChunkId | null)[] = new Array(file.blocks.length).fill(null);
          for (let start = 0; start < file.blocks.length; start += BLOCKS_AT_ONCE) {
            signal?.throwIfAborted();
            await Promise.all(file.blocks.slice(start, start + BLOCKS_AT_ONCE).map(async (id, offset) => {
              const index = start + offset;
              if (id) blocks[index] = await copyChunk(id, Math.min(manifest.blockSize, file.size - index * manifest.blockSize));
            }));
          }
          files.push({ ...file, blocks });
        }
        const targetDigest = diskDigest(files.map((file) => ({
          size: file.size,
          blockIds: file.blocks.map((id, index) => id ?? zeroBlockId(target.ids, Math.min(manifest.blockSize, file.size - index * manifest.blockSize))),
        })));
        state.disks[digest] = targetDigest;
        // Held already (the cache was lost, or another source's copy of the same bytes): its blocks were found above.
        if (await target.hasStoredDisk(targetDigest)) {
          report.storedDisks.reused++;
          return targetDigest;
        }
        // A format-1 stored disk's parent link names a stored disk too (older images read it): copied the same way.
        const parent = manifest.parent ? { ...manifest.parent, digest: await copyStoredDisk(manifest.parent.digest) } : undefined;
        await target.putStoredDisk({ ...manifest, formatVersion: manifest.formatVersion ?? MANIFEST_FORMAT_VERSION, digest: targetDigest, files, ...(parent ? { parent } : {}) });
        report.storedDisks.copied++;
        return targetDigest;
      })();
      diskCopies.set(digest, copying);
      copying.catch(() => diskCopies.delete(digest));
    }
    return copying;
  };

  const copyImage = async (image: BackupImageManifest): Promise<BackupImageManifest> => {
    const disks: BackupDiskEntry[] = [];
    for (const entry of image.disks) {
      const digest = await copyStoredDisk(entry.digest);
      const parent = entry.parent?.digest ? { ...entry.parent, digest: await copyStoredDisk(entry.parent.digest) } : entry.parent;
      disks.push({ ...entry, digest, ...(parent ? { parent } : {}) });
    }
    return { ...image, disks, origin: image.origin?.repositoryId ? image.origin : { repositoryId: source.config.id, imageId: image.id } };
  };

  /** check: the copies made before, block by block against the copy's listing; what it lacks is copied again. */
  const checkCopies = async () => {
    const checked: NonNullable<SyncReport['checked']> = { images: 0, storedDisks: 0, blocksMissing: 0, blocksRepaired: 0, unrepairable: [] };
    report.checked = checked;
    const held = new Set<string>();
    for await (const page of target.chunkIds()) for (const id of page) held.add(id);
    // Each stored disk the copies name → the source's it was copied from (undefined: the source pruned that backup since;
    // its blocks can only be checked, not copied again).
    const pairs = new Map<string, string | undefined>();
    const sourceIds = new Set(await source.backupImageIds());
    for (const [from, to] of Object.entries(state.images)) {
      signal?.throwIfAborted();
      try {
        const copy = await target.getBackupImage(to);
        const original = sourceIds.has(from) ? await source.getBackupImage(from) : undefined;
        if (original && original.disks.length !== copy.disks.length) throw new RepositoryError(`copy ${to} does not list the disks of ${from}`);
        copy.disks.forEach((entry, index) => {
          const theirs = original?.disks[index];
          if (theirs || !pairs.has(entry.digest)) pairs.set(entry.digest, theirs?.digest ?? pairs.get(entry.digest));
          if (entry.parent?.digest && (theirs?.parent?.digest || !pairs.has(entry.parent.digest))) pairs.set(entry.parent.digest, theirs?.parent?.digest ?? pairs.get(entry.parent.digest));
        });
        checked.images++;
      } catch (err) {
        if (err instanceof RepositoryStorageError || (err as Error).name === 'AbortError') throw err;
        checked.unrepairable.push({ id: to, error: (err as Error).message });
      }
    }
    const gone = (what: string) => new RepositoryError(`${what} is missing from the copy, and the source no longer holds a backup to copy it from`);
    for (const [copied, original] of pairs) {
      signal?.throwIfAborted();
      try {
        if (!(await target.hasStoredDisk(copied))) {
          if (!original) throw gone(`stored disk ${shortId(copied)}`);
          // The stored disk itself is gone: copied again whole (its blocks as the copy lacks them).
          delete state.disks[original];
          if ((await copyStoredDisk(original)) !== copied) throw new RepositoryError(`stored disk ${shortId(copied)} of the copy is not the copy of ${shortId(original)}`);
          checked.storedDisks++;
          continue;
        }
        const theirs = await target.getStoredDisk(copied);
        const mine = original ? await source.getStoredDisk(original) : undefined;
        checked.storedDisks++;
        for (const [f, file] of theirs.files.entries()) {
          const from = mine?.files[f];
          for (const [index, id] of file.blocks.entries()) {
            if (!id || held.has(id)) continue;
            checked.blocksMissing++;
            if (!mine) throw gone(`block ${shortId(id)} of stored disk ${shortId(copied)}`);
            const sourceId = from?.blocks[index];
            if (!sourceId) throw new RepositoryError(`block ${index} of stored disk ${shortId(copied)} has no counterpart in ${shortId(mine.digest)}`);
            chunkCopies.delete(sourceId);
            if ((await copyChunk(sourceId, Math.min(theirs.blockSize, file.size - index * theirs.blockSize))) !== id) {
              throw new RepositoryError(`block ${shortId(id)} of the copy is not the copy of ${shortId(sourceId)}`);
            }
            held.add(id);
            checked.blocksRepaired++;
          }
        }
      } catch (err) {
        if (err instanceof RepositoryStorageError || (err as Error).name === 'AbortError') throw err;
        checked.unrepairable.push({ id: copied, error: (err as Error).message });
      }
    }
    if (checked.blocksRepaired || checked.storedDisks) await target.flush();
  };

  try {
    if (options.check) await checkCopies();
    let batch: { from: string; copy: BackupImageManifest }[] = [];
    const writeBatch = async () => {
      if (batch.length === 0) return;
      // Ids that sort by the time of the backup (the pack's first), as the source's do.
      const packId = newBackupImageId(new Date(batch[0].copy.createdAt));
      const images = batch.map(({ copy }, index) => ({ ...copy, id: packedImageId(packId, index) }));
      await target.putBackupImages(images);
      batch.forEach(({ from }, index) => { state.images[from] = images[index].id; });
      for (const [index, { from }] of batch.entries()) {
        if (protectedIds.has(from)) {
          await target.setProtected(images[index].id, true);
          report.protectedMarks++;
        }
      }
      report.images.copied += batch.length;
      batch = [];
      await options.onState?.(state);
    };
    for (const id of todo) {
      signal?.throwIfAborted();
      let image: BackupImageManifest | undefined;
      try {
        image = await source.getBackupImage(id);
        batch.push({ from: id, copy: await copyImage(image) });
      } catch (err) {
        // The target failing (full, read-only, unreachable) stops the run; one image that cannot be read is told.
        if (err instanceof RepositoryStorageError || (err as Error).name === 'AbortError') throw err;
        report.images.failed.push({ id, ...(image ? { vm: image.vm.name } : {}), error: (err as Error).message });
      }
      imagesDone++;
      progress();
      if (batch.length >= IMAGES_PER_PACK) await writeBatch();
    }
    await writeBatch();
  } finally {
    await pool?.close();
  }
  return { report, state };
}

/** A stored disk's digest must follow from its blocks (a damaged manifest is not copied). */
function checkDigest(manifest: StoredDiskManifest, repo: Repository): void {
  const files = manifest.files.map((file) => ({
    size: file.size,
    blockIds: file.blocks.map((id, index) => id ?? zeroBlockId(repo.ids, Math.min(manifest.blockSize, file.size - index * manifest.blockSize))),
  }));
  if (diskDigest(files) !== manifest.digest) throw new RepositoryError(`stored disk ${shortId(manifest.digest)} is damaged in ${repo.store.location}: its blocks do not match its digest`);
}
