import fs from 'node:fs/promises';
import path from 'node:path';
import { BlockPool } from '../chunking/block-pool';
import { ImagesWithdrawn, InputError, RunFault, fileError } from '../errors';
import { type BackupDiskEntry, type BackupImageManifest, type DiskFileEntry, MANIFEST_FORMAT_VERSION, USED_BY_LISTED } from '../repository/manifests';
import { type Repository, newBackupImageId } from '../repository/repository';
import { packedImageId } from '../repository/image-pack';
import type { SourceInventory, VmInventory } from '../sources/inventory';
import type { VirtualDisk } from '../sources/virtual-disk';
import { type BackupProgress, ProgressTracker } from './progress';
import type { ChunkId } from '../repository/chunk-id';
import { type Baseline, newStoreClaims, storeDisk } from './store-disk';
import { REUSE_ANYTHING, type ReuseGuard } from '../gc/reuse-guard';
import { type ChangeTracking, type Consistency, type HeldDomain, holdDomain, isLive } from '../sources/libvirt-host';
import { type ByteRange, hostRangesOf, unchangedPieces } from '../sources/unchanged-ranges';
import { movedSincePrevious } from './previous-layout';

/** What the catalog knows of one stored version of a disk: its content, when that content was last actually read
 *  from the disk, and whether the version token was taken too soon after a change to be trusted (racily clean). */
export type StoredVersion = { digest: string; readAt: Date; racilyClean: boolean };

/** The catalog's answer to "is this identifier at this version already stored?" for each disk of a run, in
 *  order: the stored version, or undefined. */
export type StoredDiskLookup = (disks: { identifier: string; versionToken: string }[]) => Promise<(StoredVersion | undefined)[]>;

/** Images written and recorded together at most (one barrier, one catalog transaction for them all). */
export const IMAGE_BATCH = 256;
/** A VM that reads more than this (its disks not on the fast path) ends the batch before it: a big VM's image is
 *  written and recorded on its own, as soon as it is done. Fresh clones of a pool read less and are batched. */
export const IMAGE_BATCH_READ_LIMIT = 1024 * 1024;
/** Nor is a batch larger than about this (VMs with large configs): a pack decodes to at most 256 MiB (image-pack.ts). */
const IMAGE_BATCH_BYTES = 64 * 1024 * 1024;
/** Nor does a batch wait longer than this for more images (the dashboard shows recorded images). */
const IMAGE_BATCH_MS = 5_000;
/** VMs whose small disks are stored ahead of the one whose image is being built (see storeAhead). 2,000 VMs of a
 *  pool, first backup: 19.3 s one after another, 12.8 s 16 ahead, 9.0 s 64 ahead. */
const STORE_AHEAD = 64;
const STORE_AHEAD_MAX_BYTES = 16 * 1024 * 1024;
/** Free space the repository must keep beyond four times what is stored ahead, for stores to run ahead at all. */
const STORE_AHEAD_SPARE_BYTES = 1024 * 1024 * 1024;

/** Batches written or being recorded at most while later VMs' images are built: what waits in memory is bounded. */
const BATCHES_IN_FLIGHT = 3;
/** The loop over VMs yields to the event loop this often, so that batches handed over are written and recorded
 *  while it builds the next images (on the fast path nothing it awaits does I/O: it would otherwise run to the end
 *  first, and the catalog's work, on the other core, start only then). */
const YIELD_EVERY_MS = 10;

/** Disks whose reuse the collection's guard is asked about at once before a run. */
const TRUST_CHECKS_AT_ONCE = 32;

/** By default a disk is read in full at least once every 30 days, however often its stored version matches. */
export const DEFAULT_REREAD_AFTER_DAYS = 30;

/** What a run's result keeps of an image once it is handed over: its id and what each disk entry says of the run
 *  (not the config, file lists or users a manifest holds: a pool's 10,000 images would be held to the run's end). */
export type ImageSummary = {
  id: string;
  consistency?: BackupImageManifest['consistency'];
  disks: Pick<BackupDiskEntry, 'identifier' | 'path' | 'via' | 'target' | 'common' | 'action' | 'digest' | 'versionToken' | 'logicalBytes' | 'bytesRead' | 'bytesWritten'>[];
};

export type VmBackupResult =
  | { vm: string; configPath: string; ok: true; image: ImageSummary }
  | {
    vm: string; configPath: string; ok: false; error: string;
    /** This VM hit a failure of the repository or the catalog (a RunFault) and the run stopped there. */
    stoppedRun?: true;
    /** False: the run stopped before this VM's image was written (its `error` says where and why). */
    attempted?: false;
    /** The VM's image is in the repository but the catalog did not record it. */
    backupId?: string;
  };

export type BackupOptions = {
  inventory: SourceInventory;
  /** VM names to back up; all VMs of the source when absent. */
  vmNames?: string[];
  repo: Repository;
  lookupStoredDisks: StoredDiskLookup;
  /** A stored version whose data was last read longer ago than this many days is not trusted: the disk is read
   *  (DEFAULT_REREAD_AFTER_DAYS when absent; 0 reads every disk). */
  rereadAfterDays?: number;
  /**
   * Called, in order, with each batch of images once they are durably in the repository (the catalog records them
   * here); runs alongside the next VMs' backups, and backupVms returns only after every call has finished. It may
   * answer an error per image (that VM fails); throwing fails the whole batch. A RunFault (the catalog is gone),
   * thrown or answered, also stops the run. A batch is up to IMAGE_BATCH images of VMs that read little or nothing
   * (the fast path, a VDI pool's fresh clones), and ends before a VM that reads more than IMAGE_BATCH_READ_LIMIT, so
   * a big VM's image is recorded as before.
   */
  onImages?: (images: BackupImageManifest[]) => Promise<void | (unknown | undefined)[]>;
  onProgress?: (progress: BackupProgress) => void;
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
  now?: () => Date;
  threads?: number;
  /** How many VMs ahead small disks are stored (default STORE_AHEAD; 0: one VM after another). */
  storeAhead?: number;
  /** Names the run that made the images (one run may back up several sources): savings per run group by it. */
  runId?: string;
  /** Asked before a chunk or stored disk the repository holds is named: a garbage collection may be removing it
   *  (gc/README.md). Absent: nothing is being collected. */
  reuse?: ReuseGuard;
  /** Holds a domain of a live libvirt connection still while its disks are read (default: libvirt-host's
   *  holdDomain); tests replace it. */
  holdDomain?: (vm: VmInventory) => Promise<HeldDomain>;
};

type DiskOutcome =
  | {
    ok: true; digest: string;
    /** The stored disk's chunks (and those earlier attempts wrote), when this run read the disk (the fast path's
     *  outcomes have none). */ chunks?: ChunkId[];
    bytesRead: number; /** When the content behind `digest` was last read from the disk. */ readAt: Date; racilyClean: boolean;
  }
  | { ok: false; error: string };

/**
 * Backs up VMs of one source. Disks already stored at the same identifier and version are referenced
 * without being read, if that version is trustworthy: not racily clean, and read within `rereadAfterDays`.
 * Each other disk is read once per run, however many VMs use it. A RunFault (the repository's storage failing,
 * the catalog lost) fails the VM it hits and stops the run: later VMs are returned as not attempted, what was
 * saved before is returned as saved.
 */
export async function backupVms(options: BackupOptions): Promise<VmBackupResult[]> {
  const { inventory, repo, signal } = options;
  const reuse = options.reuse ?? REUSE_ANYTHING;
  const now = options.now ?? (() => new Date());
  const vms = selectVms(inventory, options.vmNames);
  for (const warning of inventory.warnings) options.onWarning?.(warning);

  const outcomes = new Map<string, DiskOutcome>();
  // The disks running domains write: read only while their domain is held still (never ahead, never by the fast
  // path from the scan's token: every writable disk of a running VM is captured at the same point in time).
  const liveWritable = new Set<string>();
  for (const vm of vms) {
    if (!vm.domain || !isLive(vm.domain.state)) continue;
    for (const use of vm.disks) {
      const slot = use.via === 'attached' ? vm.slots.find((candidate) => candidate.slot === use.slot) : undefined;
      if (slot && !slot.readonly && !slot.shareable) liveWritable.add(use.diskPath);
    }
  }
  const heldDisks = new Set<string>();
  // The held disks of the VM whose turn it is that are read only where they changed since a previous backup.
  const baselines = new Map<string, { baseline: Baseline; readAt: Date }>();
  // The catalog's token for what each held disk of that VM holds at its checkpoint (see checkpointToken).
  const changeTokens = new Map<string, string>();
  const hold = options.holdDomain ?? ((vm: VmInventory) => holdDomain(vm.domain!.uri, vm.name));
  const needed = [...new Set(vms.filter((vm) => !vm.error).flatMap((vm) => vm.disks.map((use) => use.diskPath)))]
    .map((diskPath) => inventory.disks.get(diskPath)!);
  const stored = await options.lookupStoredDisks(needed);
  const rereadAfterDays = options.rereadAfterDays ?? DEFAULT_REREAD_AFTER_DAYS;
  const readSince = now().getTime() - rereadAfterDays * 24 * 3600 * 1000;
  // The scan's own flag too: equal tokens mean equal timestamps, unless the clock went back meanwhile.
  const trusted = (disk: VirtualDisk, version: StoredVersion | undefined): version is StoredVersion =>
    !!version && !liveWritable.has(disk.path) && !version.racilyClean && !disk.racilyClean && rereadAfterDays > 0 && version.readAt.getTime() > readSince;
  // The repository is asked about all the run's disks at once (a pool's 10,000 overlays: 0.8 s one after another).
  const held = await repo.storedDisksHeld(needed.flatMap((disk, index) => (trusted(disk, stored[index]) ? [stored[index]!.digest] : [])));
  await eachAtOnce(needed, TRUST_CHECKS_AT_ONCE, async (disk, index) => {
    const version = stored[index];
    if (trusted(disk, version) && held.has(version.digest) && (await reuse.mayReuseDisk(version.digest))) {
      outcomes.set(disk.path, { ok: true, digest: version.digest, bytesRead: 0, readAt: version.readAt, racilyClean: false });
    }
  });
  const bytesToRead = needed.reduce((sum, disk) => sum + (outcomes.has(disk.path) ? 0 : disk.logicalBytes), 0);

  const progress = new ProgressTracker(bytesToRead, vms.length, options.onProgress);
  const pool = bytesToRead > 0 ? new BlockPool({ ids: repo.ids, sealer: repo.chunkSealer, zstdLevel: repo.config.compression.level, blockSize: repo.config.blockSize, threads: options.threads }) : undefined;
  const claims = newStoreClaims();
  // A common disk's files (names, modes, owners) are read once per run, however many VMs' images name them.
  const fileEntries = new Map<string, Promise<DiskFileEntry[]>>();
  // Disks whose read/written bytes are already counted in some VM's entry: each is counted once per run.
  const accounted = new Set<string>();
  const results: VmBackupResult[] = [];
  let recording: Promise<void> = Promise.resolve();
  // Each batch's write and record, in order; the first ones are awaited when more than BATCHES_IN_FLIGHT are pending.
  const inFlight: Promise<void>[] = [];
  let yieldedAt = Date.now();
  // Images built but not yet handed to the repository: written and recorded as one batch.
  type PendingImage = { vm: VmInventory; image: BackupImageManifest; index: number };
  let batch: PendingImage[] = [];
  let batchSince = 0;
  let batchBytes = 0;
  // The batch's images are the members of one pack (one blob, one barrier): their ids are the pack's and a position.
  let packId = '';
  const fail = (item: PendingImage, err: unknown, extra: { backupId?: string }) => {
    const error = err instanceof Error ? err.message : String(err);
    const fault = err instanceof RunFault;
    if (fault) stop ??= { vm: item.vm.name, error };
    results[item.index] = { vm: item.vm.name, configPath: item.vm.configPath, ok: false, error, ...extra, ...(fault && stop?.vm === item.vm.name ? { stoppedRun: true as const } : {}) };
  };
  // The batch's write overlaps the next VMs; the catalog records batches in order, each once it is stored.
  const writeBatch = () => {
    if (batch.length === 0) return;
    const items = batch;
    batch = [];
    batchBytes = 0;
    const written = repo.putBackupImages(items.map((item) => item.image));
    written.catch(() => undefined); // handled in the recording step below
    recording = recording.then(async () => {
      try {
        await written;
      } catch (err) {
        // Nothing names these images, so nothing is recorded; their chunks are reused by the next run.
        if (!(err instanceof RunFault)) throw err;
        for (const item of items) fail(item, err, {});
        return;
      }
      let refused: void | (unknown | undefined)[];
      try {
        refused = await options.onImages?.(items.map((item) => item.image));
      } catch (err) {
        for (const item of items) fail(item, err, err instanceof ImagesWithdrawn ? {} : { backupId: item.image.id });
        return;
      }
      items.forEach((item, n) => { if (refused?.[n] !== undefined) fail(item, refused[n], { backupId: item.image.id }); });
    });
    recording.catch(() => undefined); // surfaced by the final await below
    inFlight.push(recording);
  };
  const keepPace = async () => {
    while (inFlight.length > BATCHES_IN_FLIGHT) await inFlight.shift()!.catch(() => undefined);
    if (Date.now() - yieldedAt >= YIELD_EVERY_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      yieldedAt = Date.now();
    }
  };
  // Set by the first RunFault: the VM it hit and why. No image is written after it; later VMs are reported.
  let stop: { vm: string; error: string } | undefined;
  const notAttempted = (vm: VmInventory): VmBackupResult => ({
    vm: vm.name, configPath: vm.configPath, ok: false, attempted: false, error: `not backed up: the run stopped at ${stop!.vm} (${stop!.error})`,
  });
  // Each disk stored once per run: the first to need it starts it, every other VM waits for the same outcome.
  const storing = new Map<string, Promise<DiskOutcome>>();
  const storeAheadCount = options.storeAhead ?? STORE_AHEAD;
  const ensureStored = (disk: VirtualDisk): Promise<DiskOutcome> => {
    const known = outcomes.get(disk.path);
    if (known) return Promise.resolve(known);
    // Not remembered: its own VM's turn, with the domain held, reads it.
    if (liveWritable.has(disk.path) && !heldDisks.has(disk.path)) return Promise.resolve({ ok: false, error: `${disk.path}: written by a running domain; read only while that domain is held still for its own backup` });
    let started = storing.get(disk.path);
    if (!started) {
      started = storeOnce(disk);
      storing.set(disk.path, started);
      // Once stored its outcome is kept (outcomes); a failed store stays here, so that every VM waiting meets it.
      started.then(() => storing.delete(disk.path), () => undefined);
    }
    return started;
  };
  const storeOnce = async (disk: VirtualDisk): Promise<DiskOutcome> => {
    if (disk.parent) {
      const parent = await ensureStored(inventory.disks.get(disk.parent.path)!);
      if (!parent.ok) {
        outcomes.set(disk.path, parent); // kept like any outcome: a later VM's turn does not start this store again
        return parent;
      }
    }
    progress.disk = disk.relativePath;
    let outcome: DiskOutcome;
    try {
      const baseline = baselines.get(disk.path);
      const stored = await storeDisk({ disk, repo, pool: pool!, claims, reuse, onBytes: (n) => progress.add(n), signal, now, baseline: baseline?.baseline });
      outcome = {
        // The chunks to credit: those the stored disk names, and any an earlier attempt of a changing disk wrote.
        ok: true, digest: stored.manifest.digest, chunks: [...new Set([...stored.manifest.files.flatMap((file) => file.blocks).filter((id): id is ChunkId => id !== null), ...stored.wrote])],
        bytesRead: stored.bytesRead,
        // Taken in part from a previous backup: its content was last read in full when that backup's was.
        readAt: baseline && stored.bytesReused > 0 ? baseline.readAt : now(),
        racilyClean: disk.racilyClean, // storeDisk left the token and flag of its last stat here
      };
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      outcome = { ok: false, error: err.message };
    }
    outcomes.set(disk.path, outcome);
    return outcome;
  };
  /**
   * For a held VM: the checkpoint-token each of its tracked qcow2 disks is recorded under, and for those whose
   * previous backup was recorded under a checkpoint the domain still has, what they may take from it (every range
   * the guest did not write since). Any doubt leaves a disk to be read whole. Answers the checkpoints to keep once
   * the domain is thawed (undefined: delete none then).
   */
  const prepareChangedReads = async (vm: VmInventory, held: HeldDomain, changes: ChangeTracking): Promise<string[] | undefined> => {
    const offline = held.consistency === 'offline';
    const tracked = new Map<string, string>();
    for (const [file, dev] of changes.tracked) tracked.set(await fs.realpath(file).catch(() => file), dev);
    const candidates: { disk: VirtualDisk; dev: string; file: { dev: number; ino: number } }[] = [];
    for (const use of vm.disks) {
      const disk = inventory.disks.get(use.diskPath)!;
      const dev = tracked.get(disk.path);
      // A shut-off domain's disk found unchanged, or stored ahead (read before the checkpoint): not read after it.
      // Nor one another VM uses (a base it was left writable on): its checkpoint would write that VM's disk.
      const readLater = offline
        ? !outcomes.has(disk.path) && !storing.has(disk.path) && (inventory.usedBy.get(disk.path) ?? [vm.name]).length < 2
        : liveWritable.has(disk.path);
      if (!dev || !readLater || disk.format !== 'qcow2' || disk.files.length !== 1 || candidates.some((c) => c.disk === disk)) continue;
      const stat = await fs.stat(disk.files[0]).catch(() => undefined);
      if (!stat) continue;
      candidates.push({ disk, dev, file: stat });
    }
    if (candidates.length === 0) return offline ? undefined : [changes.checkpoint];
    await changes.take(candidates.map((c) => c.dev));
    for (const c of candidates) changeTokens.set(c.disk.path, checkpointToken(changes.checkpoint, c.dev, c.file));
    // A shut-off domain's checkpoint tracks only the disks read now: the others' older checkpoints stay (and their
    // bitmaps in the others' files). Its others go now, before the read: deleting a bitmap writes the file, which is
    // recorded as read.
    const keep = async (from?: string) => {
      const list = [changes.checkpoint, ...(from ? [from] : [])];
      if (!offline) return list;
      const some = candidates.length < changes.tracked.size ? candidates.map((c) => c.dev) : undefined;
      const warning = await changes.keepOnly(list, some).catch((err: Error) => `${vm.name}: ${err.message}`);
      if (warning) options.onWarning?.(warning);
      return undefined;
    };
    if (changes.earlier.length === 0 || rereadAfterDays <= 0) return keep();
    const asked = changes.earlier.flatMap((checkpoint) => candidates.map((c) => ({ checkpoint, c, identifier: c.disk.identifier, versionToken: checkpointToken(checkpoint, c.dev, c.file) })));
    const found = await options.lookupStoredDisks(asked);
    const fresh = (version: StoredVersion | undefined): version is StoredVersion => !!version && !version.racilyClean && version.readAt.getTime() > readSince;
    // The newest checkpoint some disk's previous backup was recorded under (one bitmap job per VM).
    const hit = asked.findIndex((_, n) => fresh(found[n]));
    if (hit < 0) return keep();
    const from = asked[hit].checkpoint;
    const usable: { c: (typeof candidates)[number]; version: StoredVersion }[] = [];
    for (const [n, question] of asked.entries()) {
      const version = found[n];
      if (question.checkpoint !== from || !fresh(version)) continue;
      if ((await repo.storedDisksHeld([version.digest])).has(version.digest) && (await reuse.mayReuseDisk(version.digest))) usable.push({ c: question.c, version });
    }
    if (usable.length === 0) return keep(from);
    let dirty: Map<string, ByteRange[]>;
    try {
      dirty = await changes.changedSince(from, usable.map((u) => u.c.dev));
    } catch (err) {
      // Read whole, and recorded under the checkpoint just taken: the one that failed goes.
      if (err instanceof RunFault) throw err;
      options.onWarning?.(`${vm.name}: its disks are read whole: ${(err as Error).message}`);
      return keep();
    }
    for (const { c, version } of usable) {
      const written = dirty.get(c.dev);
      if (!written) continue;
      try {
        const previous = await repo.getStoredDisk(version.digest);
        if (previous.blockSize !== repo.config.blockSize || previous.files.length !== 1) continue;
        const { clusterSize, pieces } = await unchangedPieces(c.disk.files[0], written);
        const moved = await movedSincePrevious(repo, previous.files[0], previous.blockSize, pieces, clusterSize);
        if (moved) throw new InputError(moved);
        baselines.set(c.disk.path, { baseline: { previous: previous.files[0], unchanged: hostRangesOf(pieces) }, readAt: version.readAt });
      } catch (err) {
        if (err instanceof RunFault) throw err;
        options.onWarning?.(`${vm.name}: ${c.disk.path} is read whole: ${(err as Error).message}`);
      }
    }
    return keep(from);
  };
  // The disks of the next VMs are stored while this one's image is built: a pool of small VMs waits on each disk's
  // durability barriers (chunk, stored disk), which overlap and share the file system's journal commits. Only the
  // storing runs ahead; what each VM's image says, and the order of images, are decided VM after VM as before.
  // Small disks only (a disk and every parent still to store): large ones are read one after another, as before.
  const small = (disk: VirtualDisk | undefined): boolean => !disk || outcomes.has(disk.path) || storing.has(disk.path)
    || (disk.logicalBytes <= STORE_AHEAD_MAX_BYTES && small(disk.parent ? inventory.disks.get(disk.parent.path) : undefined));
  // Stores run ahead only while the repository has room to spare for them: when it fills up, VMs are stored one
  // after another, so that what fits is the VMs in their order (not a later VM's chunks in an earlier VM's place).
  let aheadRoom = false;
  let aheadFrom = 0;
  const roomToStoreAhead = async (index: number): Promise<boolean> => {
    let window = 0;
    for (const vm of vms.slice(index + 1, index + 1 + storeAheadCount)) {
      for (const use of vm.disks) {
        const disk = inventory.disks.get(use.diskPath)!;
        if (!outcomes.has(disk.path) && !storing.has(disk.path) && disk.logicalBytes <= STORE_AHEAD_MAX_BYTES) window += disk.logicalBytes;
      }
    }
    if (window === 0) return false;
    const free = await repo.freeBytes();
    return free === undefined || free > STORE_AHEAD_SPARE_BYTES + 4 * window;
  };
  const storeAhead = (index: number) => {
    const vm = vms[index];
    if (!vm || vm.error || stop || signal?.aborted) return;
    for (const use of vm.disks) {
      const disk = inventory.disks.get(use.diskPath)!;
      if (small(disk) && !liveWritable.has(disk.path)) ensureStored(disk).catch(() => undefined); // met by that VM's turn
    }
  };
  try {
    for (const [index, vm] of vms.entries()) {
      if (pool && storeAheadCount > 0) {
        if (index % storeAheadCount === 0) aheadRoom = await roomToStoreAhead(index);
        // Each VM once, this one first (its stores claim the chunks it shares with the next ones): the window moves
        // on by one VM per turn.
        if (aheadRoom) for (let ahead = Math.max(index, aheadFrom); ahead <= index + storeAheadCount; ahead++) storeAhead(ahead);
        aheadFrom = aheadRoom ? index + storeAheadCount + 1 : 0;
      }
      await keepPace();
      signal?.throwIfAborted();
      progress.setVmsDone(results.length);
      if (stop) {
        results.push(notAttempted(vm));
        continue;
      }
      if (vm.error) {
        results.push({ vm: vm.name, configPath: vm.configPath, ok: false, error: vm.error });
        continue;
      }
      progress.vm = vm.name;
      // A VM that reads more than a little takes a while: the images before it are written and recorded meanwhile.
      const toRead = vm.disks.filter((use) => !outcomes.has(use.diskPath)).reduce((sum, use) => sum + inventory.disks.get(use.diskPath)!.logicalBytes, 0);
      if (toRead > IMAGE_BATCH_READ_LIMIT || (batch.length > 0 && Date.now() - batchSince > IMAGE_BATCH_MS)) writeBatch();
      const entries: BackupDiskEntry[] = [];
      // Counted into `accounted` only if this VM's image is written: a failed VM's reads go to the next user (of
      // the disk, for bytes read; of the chunk or stored disk, for what this run wrote).
      const accountedHere = new Set<string>();
      const chunksCreditedHere = new Set<ChunkId>();
      const disksCreditedHere = new Set<string>();
      let failure: string | undefined;
      // A domain of a live connection is held still while its disks are read (a running one: at one point in time).
      let held: HeldDomain | undefined;
      if (vm.domain) {
        try {
          held = await hold(vm);
        } catch (err) {
          if (!(err instanceof InputError)) throw err;
          results.push({ vm: vm.name, configPath: vm.configPath, ok: false, error: `${vm.name} could not be held still for its backup: ${err.message}` });
          continue;
        }
        // Shut off at the scan, running now: its disks may have been read ahead, unheld. Not backed up this run.
        if (held.consistency !== 'offline' && !isLive(vm.domain.state)) failure = `domain ${vm.name} was started after the scan: not backed up this run (the next run holds it still)`;
        else for (const use of vm.disks) if (liveWritable.has(use.diskPath)) heldDisks.add(use.diskPath);
      }
      // Set once the changed reads were prepared: the checkpoints to keep after the thaw (unset: none is deleted).
      let keepCheckpoints: string[] | undefined;
      try {
        if (held?.changes && !failure) {
          // Inside the hold's try: whatever fails here, the domain is thawed below.
          try {
            keepCheckpoints = await prepareChangedReads(vm, held, held.changes);
          } catch (err) {
            if (err instanceof RunFault) {
              // The catalog or repository failed: this VM fails and the run stops, as for a disk's store.
              stop ??= { vm: vm.name, error: err.message };
              failure = err.message;
            } else {
              options.onWarning?.(`${vm.name}: its disks are read whole: ${(err as Error).message}`);
              // A running domain's checkpoint was taken; a shut-off one's may not have been.
              if (held.consistency !== 'offline') keepCheckpoints = [held.changes.checkpoint];
            }
          }
        }
        for (const use of failure ? [] : vm.disks) {
          const disk = inventory.disks.get(use.diskPath)!;
          let outcome: DiskOutcome;
          try {
            outcome = await ensureStored(disk);
          } catch (err) {
            if (!(err instanceof RunFault)) throw err;
            stop ??= { vm: vm.name, error: err.message };
            failure = err.message;
            break;
          }
          const firstUse = !accounted.has(disk.path) && !accountedHere.has(disk.path);
          accountedHere.add(disk.path);
          if (!outcome.ok) {
            failure = outcome.error;
            break;
          }
          const usedBy = inventory.usedBy.get(disk.path) ?? [vm.name];
          // What this run wrote, credited to the first VM in order whose image names it (and then taken out of the
          // claims' record of what was written, below).
          const storedHere = claims.newDisks.has(outcome.digest) && !disksCreditedHere.has(outcome.digest);
          disksCreditedHere.add(outcome.digest);
          let writtenHere = 0;
          for (const id of outcome.chunks ?? []) {
            const bytes = claims.written.get(id);
            if (bytes === undefined || chunksCreditedHere.has(id)) continue;
            chunksCreditedHere.add(id);
            writtenHere += bytes;
          }
          const parent = disk.parent ? inventory.disks.get(disk.parent.path)! : undefined;
          const parentOutcome = parent ? outcomes.get(parent.path) : undefined;
          let files: DiskFileEntry[];
          try {
            if (usedBy.length < 2) files = await fileEntriesOf(disk);
            else {
              if (!fileEntries.has(disk.path)) fileEntries.set(disk.path, fileEntriesOf(disk));
              files = await fileEntries.get(disk.path)!;
            }
          } catch (err) {
            if (!(err instanceof InputError)) throw err;
            failure = err.message;
            break;
          }
          entries.push({
            identifier: disk.identifier,
            path: disk.path,
            relativePath: disk.relativePath,
            via: use.via,
            slot: use.slot,
            target: use.target,
            format: disk.format,
            versionToken: disk.versionToken,
            digest: outcome.digest,
            files,
            vmdk: disk.vmdk ? { cid: disk.vmdk.cid, parentCid: disk.vmdk.parentCid, createType: disk.vmdk.createType } : undefined,
            common: usedBy.length > 1,
            usedBy: usedBy.slice(0, USED_BY_LISTED),
            ...(usedBy.length > USED_BY_LISTED ? { usedByCount: usedBy.length } : {}),
            parent: disk.parent && parent ? {
              pointer: disk.parent.pointer, path: parent.path, identifier: parent.identifier, versionToken: parent.versionToken,
              digest: parentOutcome?.ok ? parentOutcome.digest : undefined,
            } : undefined,
            action: storedHere ? 'stored' : 'referenced',
            logicalBytes: disk.logicalBytes,
            bytesRead: firstUse ? outcome.bytesRead : 0,
            bytesWritten: writtenHere,
            readAt: outcome.readAt.toISOString(),
            racilyClean: outcome.racilyClean,
            ...(changeTokens.has(disk.path) ? { changeToken: changeTokens.get(disk.path) } : {}),
          });
        }
      } finally {
        if (held) {
          for (const use of vm.disks) heldDisks.delete(use.diskPath);
          // Put back as it was whatever happened above; a domain that started while read is not backed up.
          const thawed = await held.thaw().catch((err: Error) => ({ warning: `${vm.name}: ${err.message}`, error: undefined }));
          if (thawed.warning) options.onWarning?.(thawed.warning);
          if (thawed.error) failure ??= thawed.error;
          // The checkpoint this backup took, and the one it read from (the next one, should this image not be
          // recorded); older ones, and those of killed or failed backups, go.
          if (held.changes && keepCheckpoints) {
            const kept = await held.changes.keepOnly(keepCheckpoints).catch((err: Error) => `${vm.name}: ${err.message}`);
            if (kept) options.onWarning?.(kept);
          }
          baselines.clear();
          changeTokens.clear();
        }
      }
      if (failure) {
        results.push({ vm: vm.name, configPath: vm.configPath, ok: false, error: failure, ...(stop?.vm === vm.name ? { stoppedRun: true as const } : {}) });
        continue;
      }
      // The run stopped (an earlier image's write or record failed) while this VM's disks were read.
      if (stop) {
        results.push(notAttempted(vm));
        continue;
      }
      for (const diskPath of accountedHere) accounted.add(diskPath);
      for (const id of chunksCreditedHere) claims.written.delete(id);
      for (const digest of disksCreditedHere) claims.newDisks.delete(digest);
      const createdAt = now();
      if (batch.length === 0) {
        batchSince = Date.now();
        packId = newBackupImageId(createdAt);
      }
      const image = buildImage(inventory, vm, entries, packedImageId(packId, batch.length), createdAt, options.runId, held?.consistency);
      batch.push({ vm, image, index: results.push({ vm: vm.name, configPath: vm.configPath, ok: true, image: summaryOf(image) }) - 1 });
      // What an image's JSON holds beyond a few KB: its config, and its disks' entries.
      batchBytes += image.vm.configBase64.length + 4096 * (1 + image.disks.length);
      if (batch.length >= IMAGE_BATCH || batchBytes >= IMAGE_BATCH_BYTES) writeBatch();
    }
    writeBatch();
    await recording;
  } finally {
    // Nothing of this run is still running when it returns: stores started ahead (for VMs a stop left out) too.
    await Promise.allSettled(storing.values());
    progress.setVmsDone(results.length);
    progress.report();
    await pool?.close();
    await recording.catch(() => undefined);
  }
  return results;
}

/**
 * The version token the catalog files a held disk's stored content under, besides its file's: the checkpoint taken
 * just before its point in time, its target, and the file itself (device and inode: a file put in its place — a
 * restore writes a new one — was never tracked by that checkpoint). A later backup finds its baseline by it.
 */
export function checkpointToken(checkpoint: string, dev: string, file: { dev: number; ino: number }): string {
  return `libvirt-checkpoint:${checkpoint}:${dev}:${file.dev}:${file.ino}`;
}

function summaryOf(image: BackupImageManifest): ImageSummary {
  return {
    id: image.id,
    ...(image.consistency ? { consistency: image.consistency } : {}),
    disks: image.disks.map((d) => ({
      identifier: d.identifier, path: d.path, via: d.via, target: d.target, common: d.common, action: d.action, digest: d.digest,
      versionToken: d.versionToken, logicalBytes: d.logicalBytes, bytesRead: d.bytesRead, bytesWritten: d.bytesWritten,
    })),
  };
}

/** A disk's files as its image names them: relative to the main file's folder, with the mode and owner its last
 *  stat showed (the scan's, or the read's when the disk was read). */
async function fileEntriesOf(disk: VirtualDisk): Promise<DiskFileEntry[]> {
  const dir = path.dirname(disk.path);
  return Promise.all(disk.files.map(async (file, index) => {
    const known = disk.ownership?.length === disk.files.length ? disk.ownership[index] : undefined;
    const { mode, uid, gid } = known ?? (await fs.stat(file).catch((err) => { throw fileError(file, err); }));
    return { name: path.relative(dir, file).split(path.sep).join('/'), mode: mode & 0o777, uid, gid };
  }));
}

/** Runs `work` on every item, at most `limit` at a time; rejects with the first failure once none is running. */
async function eachAtOnce<T>(items: T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await work(items[index], index);
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
}

function selectVms(inventory: SourceInventory, names: string[] | undefined): VmInventory[] {
  if (!names || names.length === 0) return inventory.vms;
  return names.flatMap((name) => {
    // Every VM of that name: where configs share a name, each is refused with its own line.
    const vms = inventory.vms.filter((candidate) => candidate.name === name);
    if (vms.length === 0) throw new InputError(`no VM named '${name}' in source '${inventory.source.name}'`);
    return vms;
  });
}

function buildImage(inventory: SourceInventory, vm: VmInventory, disks: BackupDiskEntry[], id: string, createdAt: Date, runId?: string, consistency?: Consistency): BackupImageManifest {
  const sum = (pick: (d: BackupDiskEntry) => number) => disks.reduce((total, d) => total + pick(d), 0);
  return {
    formatVersion: MANIFEST_FORMAT_VERSION,
    id,
    createdAt: createdAt.toISOString(),
    ...(runId ? { runId } : {}),
    ...(consistency ? { consistency } : {}),
    source: {
      name: inventory.source.name, type: inventory.source.type, path: inventory.root,
      ...(inventory.areas.length > 1 || inventory.source.uri ? { configFolder: inventory.configRoot, storage: inventory.areas.slice(1) } : {}),
      ...(inventory.source.uri ? { uri: inventory.source.uri } : {}),
    },
    vm: {
      name: vm.name, uuid: vm.uuid, configPath: vm.configPath,
      relativeConfigPath: path.relative(inventory.root, vm.configPath).split(path.sep).join('/'),
      configBase64: vm.config!.configBytes.toString('base64'),
    },
    disks,
    totals: {
      logicalBytes: sum((d) => d.logicalBytes),
      bytesRead: sum((d) => d.bytesRead),
      bytesWritten: sum((d) => d.bytesWritten),
      bytesReferenced: sum((d) => (d.action === 'referenced' ? d.logicalBytes : 0)),
    },
  };
}
