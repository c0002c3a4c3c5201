/**
 * A backup's side of garbage collection (README.md): before naming a chunk or stored disk the repository already
 * holds, a backup that knows it was condemned rescues it; one it cannot rescue is being removed, so the backup
 * stores it anew once the removal is finished.
 */
import { type ChunkId, chunkKey } from '../repository/chunk-id';
import { type Repository, storedDiskKey } from '../repository/repository';

export type ReuseGuard = {
  /** True: the chunk (known to be in the repository) may be named. False: store it anew (put). */
  mayReuseChunk(id: ChunkId): Promise<boolean>;
  /** True: the stored disk and its chunks may be named. False: read the disk and store it anew. */
  mayReuseDisk(digest: string): Promise<boolean>;
  /** Before putting a chunk or stored disk the repository lacks: a removal of it left half-done (a collection killed
   *  mid-sweep) is finished first, so that it cannot remove the new copy later. */
  beforePutChunk(id: ChunkId): Promise<void>;
  beforePutDisk(digest: string): Promise<void>;
};

/** No collection has condemned anything this run knows of. */
export const REUSE_ANYTHING: ReuseGuard = {
  mayReuseChunk: async () => true, mayReuseDisk: async () => true, beforePutChunk: async () => undefined, beforePutDisk: async () => undefined,
};

/** The catalog's record of condemned keys, as a backup session sees it. */
export type CondemnedKeys = {
  /** The keys condemned when the session began (all a backup must ask about: later ones wait for it). */
  readonly keys: ReadonlySet<string>;
  /** Keys verify found damaged and moved aside: never reused; stored anew, they are reported healed. */
  readonly damaged?: ReadonlySet<string>;
  /**
   * Withdraws the condemnation of all of `keys` in one step, or of none: none when any is being removed, or when
   * one no longer condemned is absent from the repository (`exists` tells; it was removed). True: all may be named.
   */
  rescue(keys: string[], exists: (keys: string[]) => Promise<boolean>): Promise<boolean>;
  /** Finishes the removal of those of `keys` being removed (under their locks, with `remove`): a put after it stays. */
  finishRemoval(keys: string[], remove: (keys: string[]) => Promise<void>): Promise<void>;
};

export class CondemnedReuseGuard implements ReuseGuard {
  /** Keys this run rescued: asked about once. */
  private readonly rescued = new Set<string>();
  private readonly chunksCondemned: boolean;

  /** Damaged keys this run stored anew. */
  readonly healed = new Set<string>();

  constructor(private readonly repo: Repository, private readonly condemned: CondemnedKeys) {
    this.chunksCondemned = [...condemned.keys, ...(condemned.damaged ?? [])].some((key) => key.startsWith('chunks/'));
  }

  private isDamaged(key: string): boolean {
    return !!this.condemned.damaged?.has(key) && !this.healed.has(key);
  }

  mayReuseChunk(id: ChunkId): Promise<boolean> {
    return this.mayReuse([chunkKey(id)]);
  }

  async mayReuseDisk(digest: string): Promise<boolean> {
    const key = storedDiskKey(digest);
    if (this.isDamaged(key)) return false;
    const diskCondemned = this.condemned.keys.has(key) && !this.rescued.has(key);
    // Its chunks may be condemned without it (a collection removes every chunk no image reaches).
    if (!diskCondemned && !this.chunksCondemned) return true;
    let chunks: string[];
    try {
      const manifest = await this.repo.getStoredDisk(digest);
      chunks = [...new Set(manifest.files.flatMap((file) => file.blocks).filter((id): id is ChunkId => id !== null))].map(chunkKey);
    } catch {
      return false; // removed meanwhile, or unreadable: read the disk instead
    }
    return this.mayReuse([key, ...chunks]);
  }

  beforePutChunk(id: ChunkId): Promise<void> {
    return this.beforePut(chunkKey(id));
  }

  beforePutDisk(digest: string): Promise<void> {
    return this.beforePut(storedDiskKey(digest));
  }

  private async beforePut(key: string): Promise<void> {
    // Stored anew now (its put follows): the run reports it healed once its images are durable.
    if (this.condemned.damaged?.has(key)) this.healed.add(key);
    if (!this.condemned.keys.has(key) || this.rescued.has(key)) return;
    await this.finishRemoval([key]);
    // Put next, with no row left: nothing removes it, and a later reuse by this run needs no question.
    this.rescued.add(key);
  }

  private finishRemoval(keys: string[]): Promise<void> {
    return this.condemned.finishRemoval(keys, async (removing) => {
      for (const k of removing) await this.repo.remove(k);
      await this.repo.flush();
    });
  }

  /** All of `keys` (a chunk; a stored disk and its chunks) rescued together, or none and not reusable. */
  private async mayReuse(keys: string[]): Promise<boolean> {
    // Damaged (moved aside by verify, or found so while this run had it): stored anew instead.
    if (keys.some((k) => this.isDamaged(k))) return false;
    const asked = keys.filter((k) => this.condemned.keys.has(k) && !this.rescued.has(k));
    if (asked.length === 0) return true;
    const exists = async (gone: string[]) => {
      for (const k of gone) if ((await this.repo.sizeOf(k)) === undefined) return false;
      return true;
    };
    if (await this.condemned.rescue(asked, exists)) {
      for (const k of asked) this.rescued.add(k);
      return true;
    }
    // Being removed (or removed): finish that first, so the put the caller does next is not removed after it.
    await this.finishRemoval(asked);
    return false;
  }
}
