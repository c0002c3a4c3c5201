import type { BlockPool, Slot } from '../chunking/block-pool';
import { RepositoryError } from '../errors';
import { type ChunkId, shortId } from '../repository/chunk-id';
import type { Repository } from '../repository/repository';

/**
 * The read path of restores: a stored chunk's frame is read into a restore pool's slot, then a worker decodes it
 * into `slot.bytes` (the block's exact length) and checks it against `id`. A missing, unreadable or corrupt chunk
 * is a RepositoryError naming it; nothing unverified reaches `slot.bytes`' reader.
 */
export async function readBlock(repo: Repository, pool: BlockPool, slot: Slot, id: ChunkId): Promise<void> {
  // A stored frame is at most one byte longer than its block (kept raw when zstd does not shrink it).
  // A sealing pool opens the sealed frame in its worker (its tag checked there: a frame that fails it is corrupt).
  const storedLength = await repo.readEncodedChunkInto(id, pool.frameSpace(slot), { sealed: pool.seals }).catch((err) => {
    if (err instanceof RepositoryError && /larger/.test(err.message)) throw new RepositoryError(`chunk ${shortId(id)} is corrupt: content does not match its hash`);
    throw err;
  });
  if (!(await pool.decode(slot, storedLength, id))) throw new RepositoryError(`chunk ${shortId(id)} is corrupt: content does not match its hash`);
}
