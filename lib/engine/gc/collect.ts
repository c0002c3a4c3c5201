/**
 * Garbage collection: removes the chunks and stored disks no backup image reaches, safely while backups run.
 * The protocol and why it is safe: README.md beside this file. The coordination (generations, backup sessions,
 * condemned keys and their locks) lives in the catalog; the engine sees it through GcCoordinator.
 */
import { RepositoryError } from '../errors';
import { type ChunkId, chunkKey } from '../repository/chunk-id';
import { type Repository, storedDiskKey } from '../repository/repository';

/** A blob garbage collection may remove: `chunks/ab/<id>` or `disks/<digest>.json`, with its stored size. */
export type Condemned = { key: string; bytes: number };

/** A backup that was running when the keys were condemned, not yet ended (for "pending, and why"). */
export type RunningSession = { id: number; host: string; pid: number; startedAt: Date };

export type GcCoordinator = {
  /**
   * Before a new collection: finishes the removals an interrupted one began (keys marked as being deleted: each
   * removed under its lock, with `remove`) and withdraws every other condemnation it left.
   */
  recover(remove: (keys: string[]) => Promise<void>): Promise<void>;
  /** Condemns the keys as a new generation, in one step with starting that generation; returns it. Backups that
   *  start from then on know these keys and rescue any they reuse. */
  condemn(keys: Condemned[]): Promise<number>;
  /** The backups that started before `generation` and are still running (ended ones are forgotten here). */
  runningBefore(generation: number): Promise<RunningSession[]>;
  /** Withdraws the condemnation of keys some image needs after all. */
  spare(keys: string[]): Promise<void>;
  /**
   * Removes, of `keys`, those still condemned (no backup rescued them): marks them as being deleted, then under
   * their locks calls `remove` and forgets them. Returns those removed.
   */
  sweep(keys: string[], remove: (keys: string[]) => Promise<void>): Promise<Condemned[]>;
  /** Stored disks the catalog's images name (kept too: the catalog may name an image the repository lost). */
  catalogDigests(): Promise<string[]>;
};

export type GcProgress = { phase: 'marking' | 'waiting' | 'sweeping'; message: string; done?: number; total?: number };

export type GcOptions = {
  repo: Repository;
  coordinator: GcCoordinator;
  /** Report what would be removed; condemn nothing, remove nothing. */
  dryRun?: boolean;
  /** How long to wait for backups that were running when keys were condemned (default 10 minutes). */
  waitMs?: number;
  pollMs?: number;
  onProgress?: (progress: GcProgress) => void;
  signal?: AbortSignal;
};

export type GcReport = {
  dryRun: boolean;
  /** Chunks and stored disks removed now (with --dry-run: those that would be). */
  removedChunks: number;
  removedDisks: number;
  freedBytes: number;
  /** Unreachable, but not removed this time: still condemned while earlier backups run. */
  pendingChunks: number;
  pendingBytes: number;
  pendingReason?: string;
  /** Stored disks some image names that the repository lacks (damage that verify reports in full). */
  missingDisks: string[];
  /** Images read, and chunks and stored disks in the repository when marking began. */
  images: number;
  chunks: number;
  disks: number;
};

const SWEEP_BATCH = 500;
const DEFAULT_WAIT_MS = 10 * 60 * 1000;

export async function collectGarbage(options: GcOptions): Promise<GcReport> {
  const { repo, coordinator, signal } = options;
  const progress = (p: GcProgress) => options.onProgress?.(p);
  const removeBlobs = async (keys: string[]) => {
    for (const key of keys) await repo.remove(key);
  };
  if (!options.dryRun) {
    await coordinator.recover(async (keys) => {
      await removeBlobs(keys);
      await repo.flush();
    });
  }

  // Mark. What may be removed is listed before the images are read: a chunk written after the listing is not a
  // candidate this time, and an image written after the reading is dealt with below.
  progress({ phase: 'marking', message: 'listing chunks and stored disks' });
  const chunks = new Set<string>();
  for await (const page of repo.chunkIds()) for (const id of page) chunks.add(id);
  const disks = new Set<string>();
  for await (const page of repo.storedDiskDigests()) for (const digest of page) disks.add(digest);
  const firstIds = await repo.backupImageIds();
  const reachable = new Reachable(repo);
  await reachable.addImages(firstIds, signal, (done) => progress({ phase: 'marking', message: 'reading backup images', done, total: firstIds.length }));
  await reachable.addDisks(await coordinator.catalogDigests(), signal);

  const diskCandidates = [...disks].filter((digest) => !reachable.disks.has(digest));
  const chunkCandidates = [...chunks].filter((id) => !reachable.chunks.has(id));
  const report: GcReport = {
    dryRun: !!options.dryRun, removedChunks: 0, removedDisks: 0, freedBytes: 0, pendingChunks: 0, pendingBytes: 0,
    missingDisks: [...reachable.missing].sort(), images: firstIds.length, chunks: chunks.size, disks: disks.size,
  };
  const candidates: Condemned[] = [];
  for (const digest of diskCandidates) {
    const bytes = await repo.sizeOf(storedDiskKey(digest));
    if (bytes !== undefined) candidates.push({ key: storedDiskKey(digest), bytes });
  }
  for (const id of chunkCandidates) {
    const bytes = await repo.sizeOf(chunkKey(id as ChunkId));
    if (bytes !== undefined) candidates.push({ key: chunkKey(id as ChunkId), bytes });
  }
  if (options.dryRun || candidates.length === 0) {
    for (const c of candidates) {
      if (c.key.startsWith('chunks/')) report.removedChunks++;
      else report.removedDisks++;
      report.freedBytes += c.bytes;
    }
    return report;
  }

  // Condemn, then wait for every backup that may have decided to reuse a candidate without knowing it was condemned
  // (it started before). Backups that start later know the candidates and rescue those they reuse.
  const generation = await coordinator.condemn(candidates);
  const waitMs = options.waitMs ?? DEFAULT_WAIT_MS;
  const pollMs = options.pollMs ?? 500;
  const waitUntil = Date.now() + waitMs;
  let running = await coordinator.runningBefore(generation);
  while (running.length > 0 && Date.now() < waitUntil) {
    signal?.throwIfAborted();
    progress({ phase: 'waiting', message: `waiting for ${describeSessions(running)} that started before this collection` });
    await sleep(Math.min(pollMs, Math.max(0, waitUntil - Date.now())), signal);
    running = await coordinator.runningBefore(generation);
  }
  if (running.length > 0) {
    for (const c of candidates) {
      if (c.key.startsWith('chunks/')) report.pendingChunks++;
      report.pendingBytes += c.bytes;
    }
    report.pendingReason = `${describeSessions(running)} that started before this collection ${running.length === 1 ? 'is' : 'are'} still running; run gc again when ${running.length === 1 ? 'it has' : 'they have'} ended`;
    return report;
  }

  // Those backups have ended: their images are in the repository. What they name is spared.
  const firstSet = new Set(firstIds);
  const laterIds = (await repo.backupImageIds()).filter((id) => !firstSet.has(id));
  const later = new Reachable(repo);
  await later.addImages(laterIds, signal);
  const spared = candidates.filter((c) => (c.key.startsWith('chunks/') ? later.chunks.has(c.key.slice(10)) : later.disks.has(c.key.slice(6, -5))));
  if (spared.length) await coordinator.spare(spared.map((c) => c.key));
  const sparedKeys = new Set(spared.map((c) => c.key));
  const toSweep = candidates.filter((c) => !sparedKeys.has(c.key));

  // Stored disks first, made durable, then their chunks: a stored disk that survives a crash never names a chunk
  // already gone.
  const total = toSweep.length;
  let done = 0;
  for (const phase of ['disks/', 'chunks/']) {
    const keys = toSweep.filter((c) => c.key.startsWith(phase)).map((c) => c.key);
    for (let start = 0; start < keys.length; start += SWEEP_BATCH) {
      signal?.throwIfAborted();
      const removed = await coordinator.sweep(keys.slice(start, start + SWEEP_BATCH), removeBlobs);
      for (const c of removed) {
        if (c.key.startsWith('chunks/')) report.removedChunks++;
        else report.removedDisks++;
        report.freedBytes += c.bytes;
      }
      done += Math.min(SWEEP_BATCH, keys.length - start);
      progress({ phase: 'sweeping', message: 'removing unreachable chunks and stored disks', done, total });
    }
    await repo.flush();
  }
  return report;
}

/** What a set of backup images reaches: their stored disks (parents included) and those disks' chunks. */
export class Reachable {
  readonly disks = new Set<string>();
  readonly chunks = new Set<string>();
  /** Stored disks named but absent from the repository. */
  readonly missing = new Set<string>();

  constructor(private readonly repo: Repository) {}

  async addImages(ids: string[], signal?: AbortSignal, onDone?: (done: number) => void): Promise<void> {
    for (const [index, id] of ids.entries()) {
      signal?.throwIfAborted();
      let image;
      try {
        image = await this.repo.getBackupImage(id);
      } catch (err) {
        // Removed meanwhile (a prune) names nothing; one that cannot be read might name anything: nothing is removed.
        if (err instanceof RepositoryError && !(await this.repo.hasBackupImage(id))) continue;
        throw new RepositoryError(`garbage collection stopped, nothing removed: backup image ${id} cannot be read, so what it needs is unknown (${(err as Error).message})`);
      }
      const digests: string[] = [];
      for (const disk of image.disks) {
        digests.push(disk.digest);
        if (disk.parent?.digest) digests.push(disk.parent.digest);
      }
      await this.addDisks(digests, signal);
      if (onDone && index % 256 === 255) onDone(index + 1);
    }
  }

  async addDisks(digests: string[], signal?: AbortSignal): Promise<void> {
    for (const digest of digests) {
      if (this.disks.has(digest) || this.missing.has(digest)) continue;
      signal?.throwIfAborted();
      if ((await this.repo.sizeOf(storedDiskKey(digest))) === undefined) {
        this.missing.add(digest);
        continue;
      }
      let manifest;
      try {
        manifest = await this.repo.getStoredDisk(digest);
      } catch (err) {
        throw new RepositoryError(`garbage collection stopped, nothing removed: stored disk ${digest.slice(0, 12)} cannot be read, so which chunks it needs is unknown (${(err as Error).message})`);
      }
      this.disks.add(digest);
      for (const file of manifest.files) for (const id of file.blocks) if (id) this.chunks.add(id);
    }
  }
}

function describeSessions(sessions: RunningSession[]): string {
  const named = sessions.slice(0, 3).map((s) => `pid ${s.pid} on ${s.host}, started ${s.startedAt.toISOString()}`).join('; ');
  return `${sessions.length} backup${sessions.length === 1 ? '' : 's'} (${named}${sessions.length > 3 ? '; …' : ''})`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
}
