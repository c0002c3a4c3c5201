import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { InputError, RepositoryError } from '../errors';
import { BlockPool } from '../chunking/block-pool';
import { type ChunkId, type ChunkIdScheme, zeroBlockId } from '../repository/chunk-id';
import { type RestoreFile, type StoredDiskManifest, diskFilesOf, vmdkLinksOf } from '../repository/manifests';
import { type Repository, diskDigest } from '../repository/repository';
import { isInside } from '../containment';
import { checkInside } from './destinations';
import { readBlock } from './read-block';
import { RESTORE_MARKER, type RestoreIdentity, checkTargetFolder, claimMarker, isAbandonedClaim, readMarker } from './target-folder';
import type { SourceType } from '../sources/types';
import type { DiskAction, PlannedDisk, RestorePlan } from './plan';
import { setQcow2BackingFile } from '../formats/qcow2';
import { setVmdkParent } from '../formats/vmdk';
import { renameLibvirtDomain, rewriteLibvirtDisks } from '../sources/libvirt';
import { rewriteVmxDisks } from '../sources/vmware';
import { processAlive } from '../process-alive';

export type RestoredDisk = { path: string; common: boolean; action: DiskAction; verified: boolean };
export type RestoreResult = { disks: RestoredDisk[]; configPath: string; bytesWritten: number };
export type RestoreProgress = { bytesDone: number; bytesTotal: number; disk?: string };

export type ExecuteOptions = {
  plan: RestorePlan;
  configBytes: Buffer;
  sourceType: SourceType;
  repo: Repository;
  onProgress?: (progress: RestoreProgress) => void;
  signal?: AbortSignal;
  /** Write with O_DIRECT where the filesystem takes it (default true); false always goes through the page cache. */
  directIo?: boolean;
  /** In place on a libvirt connection: the restored config is defined through libvirt, never written as its file. */
  defineDomain?: (xml: string) => Promise<void>;
  /** Restored as another VM: the config gets this name and UUID (libvirt; its MACs are dropped for new ones). */
  asNew?: { name: string; uuid: string };
};

type TempFile = { temp: string; final: string; mode?: number; uid?: number; gid?: number };

/**
 * Writes a confirmed plan: every file goes to a temp name beside its destination (each destination checked again
 * to lie inside the plan's root), every block is checked against its hash as it is read, pointers are rewritten,
 * and only then are files renamed into place and their folders fsynced. On any failure the temp files are removed
 * and nothing sits under a final name; a folder restore keeps its marker so that it can be run again.
 */
export async function executeRestore(options: ExecuteOptions): Promise<RestoreResult> {
  const at: WriteState = { renamed: 0 };
  try {
    return await writeRestore(options, at);
  } catch (err) {
    throw writeFault(options.plan, at, err);
  }
}

/** Where a restore is: the file it writes now (or the first whose flush failed), and how many files it has renamed into place. */
type WriteState = { file?: string; flushed?: string; renamed: number };

/**
 * The target's filesystem refused a write (no space, I/O error, read-only, quota): one line naming the VM, the file
 * and the cause, and what state the restore left (other errors are returned as they are).
 */
function writeFault(plan: RestorePlan, at: WriteState, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (err instanceof InputError || err instanceof RepositoryError || typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) return err;
  const cause = (err as Error).message.replace(/^E[A-Z0-9]+: /, '').replace(/,.*$/, '');
  const left = at.renamed > 0
    ? 'some of its files were renamed into place: run the same restore again'
    : plan.target.kind === 'folder'
      ? 'nothing was restored under a final name; the same restore can be run again into its folder'
      : 'nothing was restored under a final name; the VM\'s files are as they were';
  return new RestoreWriteError(`restore of ${plan.vm} stopped: ${at.flushed ?? at.file ?? plan.root}: ${cause} (${code}); ${left}`, { cause: err });
}

/** A restore's destination refused a write (ENOSPC, EIO, EROFS…): the CLI shows its one line and exits 1. */
export class RestoreWriteError extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'RestoreWriteError';
  }
}

async function writeRestore(options: ExecuteOptions, at: WriteState): Promise<RestoreResult> {
  const { plan, repo } = options;
  const toWrite = plan.disks.filter((d) => d.destination);
  const manifests = new Map<string, StoredDiskManifest>();
  for (const disk of toWrite) manifests.set(disk.entry.digest, await repo.getStoredDisk(disk.entry.digest));
  // Every stored disk is checked against its digest and its entry before anything is written (the marker too).
  const filesOf = new Map<PlannedDisk, RestoreFile[]>();
  for (const disk of toWrite) {
    const manifest = manifests.get(disk.entry.digest)!;
    verifyDigest(manifest, repo.ids);
    const files = diskFilesOf(disk.entry, manifest);
    if (files.length !== disk.files!.length) throw new RepositoryError(`${disk.entry.relativePath}: the stored disk has ${files.length} files, the plan ${disk.files!.length}; nothing was restored`);
    filesOf.set(disk, files);
  }
  const bytesTotal = toWrite.reduce((sum, d) => sum + manifests.get(d.entry.digest)!.files.reduce((s, f) => s + f.size, 0), 0);
  const folderState = await checkDestinations(plan, toWrite, bytesTotal);
  const identity = { vm: plan.vm, backupId: plan.backupId };
  if (plan.target.kind === 'folder') await beginFolderRestore(plan.target.dir, identity, folderState!);
  else await sweepStaleTemps(plan.disks.flatMap((d) => d.files?.map((f) => f.destination) ?? []).concat(plan.configDestination));

  const temps: TempFile[] = [];
  // Parents of folders this restore made: fsynced with the renames, so the new folders survive a power loss.
  const newFolders = new Set<string>();
  const syncs: Promise<void>[] = [];
  let bytesDone = 0;
  const pool = toWrite.length ? new BlockPool({ ids: repo.ids, sealer: repo.chunkSealer, blockSize: Math.max(...[...manifests.values()].map((m) => m.blockSize)), slots: 32, forRestore: true }) : undefined;
  const directIo = new Map<string, boolean>();
  try {
    for (const disk of toWrite) {
      const manifest = manifests.get(disk.entry.digest)!;
      for (const [index, file] of filesOf.get(disk)!.entries()) {
        // Checked again right before writing: a folder swapped for a symlink since planning is refused.
        const final = await checkInside(plan.areas, disk.files![index].destination, disk.entry.relativePath);
        const dir = path.dirname(final);
        for (const made of await makeFolders(dir)) newFolders.add(path.dirname(made));
        if (!directIo.has(dir)) directIo.set(dir, options.directIo !== false && (await canWriteDirect(dir, pool!)));
        const temp = tempNameFor(final);
        at.file = final;
        temps.push({ temp, final, mode: file.mode, uid: file.uid, gid: file.gid });
        const written = await writeFile(temp, file.size, file.blocks, manifest.blockSize, repo, pool!, directIo.get(dir)!, (n) => {
          bytesDone += n;
          options.onProgress?.({ bytesDone, bytesTotal, disk: disk.entry.relativePath });
        }, options.signal).catch((err) => {
          if (err instanceof RepositoryError) throw new RepositoryError(`${disk.entry.relativePath}: ${err.message}; nothing was restored`);
          throw err;
        });
        // Its flush completes later (a delayed-allocation ENOSPC shows here): the failure names this file.
        syncs.push(written.synced.catch((err) => { at.flushed ??= final; throw err; }));
      }
    }
    await Promise.all(syncs);
    for (const disk of toWrite) await repointParent(plan, disk, manifests, temps);
    for (const file of temps) await applyOwnership(file);
    // Extents and parents first, main files last, the config at the very end; each folder fsynced after its renames.
    for (const { temp, final } of [...temps].reverse()) {
      at.file = final;
      // Resolved once more: a folder on the way swapped for a symlink while the file was written is refused.
      await checkInside(plan.areas, final, path.basename(final));
      await fs.rename(temp, final);
      at.renamed++;
    }
    await syncDirs([...temps.map((t) => path.dirname(t.final)), ...newFolders]);
    temps.length = 0;
    at.file = plan.configDestination;
    await writeConfig(options);
    if (plan.target.kind === 'folder') await endFolderRestore(plan.target.dir);
  } catch (err) {
    await Promise.allSettled(syncs);
    await Promise.all(temps.map(({ temp }) => fs.rm(temp, { force: true })));
    throw err;
  } finally {
    await pool?.close();
  }
  return {
    disks: plan.disks.map((d) => ({ path: d.pointTo, common: d.common, action: d.action, verified: Boolean(d.destination) })),
    configPath: plan.configDestination,
    bytesWritten: bytesDone,
  };
}

/**
 * Makes a folder and its missing parents one level at a time (Node's recursive mkdir reports ENOENT for an ENOSPC
 * or EROFS); returns the folders it made, outermost first.
 */
async function makeFolders(dir: string): Promise<string[]> {
  const missing: string[] = [];
  for (let current = dir; ; current = path.dirname(current)) {
    const exists = await fs.stat(current).then((stat) => {
      if (!stat.isDirectory()) throw new InputError('is not a folder', { file: current });
      return true;
    }, (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    });
    if (exists || path.dirname(current) === current) break;
    missing.unshift(current);
  }
  for (const folder of missing) {
    await fs.mkdir(folder).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
  }
  return missing;
}

/** `.<name>.vmdedup-<pid>-<random>` beside the final file: the pid lets a later run tell a dead run's leftovers. */
function tempNameFor(final: string): string {
  return path.join(path.dirname(final), `.${tempStem(path.basename(final))}.vmdedup-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** The name in a temp name: the file's own, or a digest of it when the temp name would pass 255 bytes (NAME_MAX). */
function tempStem(name: string): string {
  const longest = `.${name}.vmdedup-4294967295-00000000`;
  return Buffer.byteLength(longest) <= 255 ? name : `${createHash('sha256').update(name).digest('hex').slice(0, 32)}~`;
}

const TEMP_NAME = /^\.(.+)\.vmdedup-(\d+)-[0-9a-f]{8}$/;

/** In place: removes temp files that a killed restore left beside these destinations (its pid no longer runs). */
async function sweepStaleTemps(destinations: string[]): Promise<void> {
  const wanted = new Map<string, Set<string>>();
  for (const file of destinations) {
    const names = wanted.get(path.dirname(file)) ?? new Set<string>();
    names.add(tempStem(path.basename(file)));
    wanted.set(path.dirname(file), names);
  }
  for (const [dir, names] of wanted) {
    for (const entry of await fs.readdir(dir).catch(() => [] as string[])) {
      const match = TEMP_NAME.exec(entry);
      if (match && names.has(match[1]) && !processAlive(Number(match[2]))) await fs.rm(path.join(dir, entry), { force: true });
    }
  }
}


/** Marks the target folder as this restore's (before anything is written); a rerun clears the last run's temps. */
async function beginFolderRestore(dir: string, identity: RestoreIdentity, state: 'new' | 'resume'): Promise<void> {
  const marker = path.join(dir, RESTORE_MARKER);
  if (state === 'resume') {
    const pid = (await readMarker(dir))?.pid;
    if (pid && pid !== process.pid && processAlive(pid)) throw new InputError(`a restore (process ${pid}) is writing into this folder now`, { file: dir });
    for (const entry of await fs.readdir(dir, { recursive: true })) {
      const name = path.basename(entry);
      if (TEMP_NAME.test(name) || /^\.vmdedup-direct-/.test(name) || isAbandonedClaim(name)) await fs.rm(path.join(dir, entry), { force: true });
    }
  }
  const made = await makeFolders(dir);
  const content = JSON.stringify({ ...identity, startedAt: new Date().toISOString(), pid: process.pid });
  // A new folder is claimed exclusively (of two restores started into it at once, one is refused), its marker whole.
  if (state === 'new') await claimMarker(dir, content);
  else {
    await fs.writeFile(marker, content, { flag: fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_NOFOLLOW });
    await syncFile(marker);
  }
  await syncDirs([dir, ...made.map((folder) => path.dirname(folder))]);
}

async function endFolderRestore(dir: string): Promise<void> {
  await fs.rm(path.join(dir, RESTORE_MARKER), { force: true });
  await syncDirs([dir]);
}

async function syncFile(file: string): Promise<void> {
  const handle = await fs.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs folders so that renames and new entries in them survive a power loss. */
async function syncDirs(dirs: string[]): Promise<void> {
  for (const dir of new Set(dirs)) await syncFile(dir);
}

/** The permission bits (never setuid/setgid/sticky) and, when running as root, the owner the file had at backup. */
async function applyOwnership(file: TempFile): Promise<void> {
  if (file.mode !== undefined) await fs.chmod(file.temp, file.mode & 0o777);
  if (file.uid !== undefined && file.gid !== undefined && process.getuid?.() === 0) await fs.chown(file.temp, file.uid, file.gid);
}

const FLUSH_EVERY_BLOCKS = 64;

/**
 * Whether files in `dir` can be written with O_DIRECT from the pool's slots (aligning them on the first
 * success). Direct writes skip the page cache: no copy into it, no writeback later, no memory pressure.
 */
async function canWriteDirect(dir: string, pool: BlockPool): Promise<boolean> {
  const probe = path.join(dir, `.vmdedup-direct-${randomBytes(4).toString('hex')}`);
  const handle = await fs.open(probe, DIRECT_WRITE_FLAGS, 0o600).catch(() => undefined);
  if (!handle) return false;
  try {
    return await pool.alignForDirectIo((view) => handle.write(view, 0, view.length, 0).then(() => true, () => false));
  } finally {
    await handle.close();
    await fs.rm(probe, { force: true });
  }
}

/** New files only (O_EXCL), never through a symlink at the last component (O_NOFOLLOW). */
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
const DIRECT_WRITE_FLAGS = CREATE_FLAGS | (fsConstants.O_DIRECT ?? 0);

/** Writes one file; returns once its blocks are written, with a promise of its fsync (awaited before renames). */
async function writeFile(
  temp: string, size: number, blocks: (ChunkId | null)[], blockSize: number, repo: Repository, pool: BlockPool,
  direct: boolean, onBytes: (n: number) => void, signal?: AbortSignal,
): Promise<{ synced: Promise<void> }> {
  const handle = await fs.open(temp, direct ? DIRECT_WRITE_FLAGS : CREATE_FLAGS, 0o600);
  let synced: Promise<void> | undefined;
  try {
    // Blocks are fetched, decoded and verified by the pool's workers, written at their offsets as they
    // come; the pool's slots bound what is in flight. All-zero blocks stay holes.
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    // Writes go one at a time: concurrent writes to one file contend on the inode lock (measured: an
    // eighth of the restore's CPU spinning in ext4).
    let writes: Promise<void> = Promise.resolve();
    let sinceFlush = 0;
    const flushes: Promise<void>[] = [];
    try {
      for (let index = 0; index < blocks.length && failure === undefined; index++) {
        signal?.throwIfAborted();
        const id = blocks[index];
        const length = Math.min(blockSize, size - index * blockSize);
        if (!id) {
          onBytes(length);
          continue;
        }
        const slot = await pool.acquire(length);
        const task: Promise<void> = (async () => {
          try {
            await readBlock(repo, pool, slot, id);
            // Direct writes cover whole aligned units: the last block's padding is cut by the truncate below.
            const bytes = direct ? pool.paddedBlock(slot) : slot.bytes;
            const write = writes.then(() => handle.write(bytes, 0, bytes.length, index * blockSize)).then(() => {
              onBytes(length);
              // Buffered: start writeback every 64 blocks, so the final flush does not write the whole file at once.
              if (!direct && ++sinceFlush >= FLUSH_EVERY_BLOCKS) {
                sinceFlush = 0;
                flushes.push(handle.datasync());
              }
            });
            writes = write.catch(() => undefined);
            await write;
          } finally {
            pool.release(slot);
          }
        })().catch((err) => { failure ??= err; }).finally(() => inFlight.delete(task));
        inFlight.add(task);
      }
    } finally {
      await Promise.all(inFlight);
    }
    await Promise.allSettled(flushes);
    if (failure !== undefined) throw failure;
    await handle.truncate(size);
    // The flush to disk overlaps with writing the next file.
    synced = handle.sync().finally(() => handle.close());
    synced.catch(() => undefined);
    return { synced };
  } finally {
    if (!synced) await handle.close();
  }
}

/** The manifest's digest must match its block ids: a damaged manifest is refused before anything is written. */
function verifyDigest(manifest: StoredDiskManifest, ids: ChunkIdScheme): void {
  const files = manifest.files.map((file) => ({
    size: file.size,
    blockIds: file.blocks.map((id, i) => id as ChunkId | null ?? zeroBlockId(ids, Math.min(manifest.blockSize, file.size - i * manifest.blockSize))),
  }));
  if (diskDigest(files) !== manifest.digest) throw new RepositoryError(`stored disk ${manifest.digest.slice(0, 12)} is damaged: its blocks do not match its digest`);
}

/** Points a restored child at where its parent is now: restored beside it (relative), or the live parent. */
async function repointParent(plan: RestorePlan, disk: PlannedDisk, manifests: Map<string, StoredDiskManifest>, temps: TempFile[]): Promise<void> {
  const parentLink = disk.entry.parent;
  if (!parentLink) return;
  const parent = plan.disks.find((d) => d.entry.path === parentLink.path);
  if (!parent) return;
  const childDir = path.dirname(disk.destination!);
  const sameTree = plan.target.kind === 'folder'
    ? isInside(plan.root, parent.pointTo)
    : path.dirname(parent.pointTo) === path.dirname(disk.destination!) || !path.isAbsolute(parentLink.pointer);
  // A pointer as written that still names where the parent is stays as it was (an in-place restore gives back the
  // backed-up bytes, absolute or relative); else relative inside the restored tree, absolute outside it. Resolved as
  // QEMU does, by the filesystem: `link/base.qcow2` through a symlink names the parent; `sub/../base.qcow2` does
  // not when the restored tree has no `sub`.
  const asWritten = (await physicalPath(childDir, parentLink.pointer)) === parent.pointTo;
  const pointer = asWritten ? parentLink.pointer : sameTree ? path.relative(childDir, parent.pointTo) : parent.pointTo;
  const mainTemp = temps.find((t) => t.final === disk.files![0].destination)!.temp;
  if (disk.entry.format === 'qcow2') {
    if (pointer !== parentLink.pointer) await setQcow2BackingFile(mainTemp, pointer);
  } else if (disk.entry.format === 'vmdk') {
    // The child keeps the parentCID it had at backup: it names the parent's content as backed up (the planner
    // refuses to put a restored child on a parent that changed), never a live CID that would hide a mismatch.
    const links = vmdkLinksOf(disk.entry, manifests.get(disk.entry.digest));
    if (!links) throw new RepositoryError(`no parentCID recorded for ${disk.entry.relativePath}`);
    await setVmdkParent(mainTemp, { hint: pointer, cid: links.parentCid });
  }
}

/** Where a parent pointer leads from `dir` as the filesystem resolves it (symlinks, then `..`), not as a string:
 *  the file itself may not be there yet (a temp name until the renames), its folder must. */
async function physicalPath(dir: string, pointer: string): Promise<string | undefined> {
  // Not path.resolve: it drops `sub/..` lexically, where the kernel needs `sub` to exist.
  const joined = path.isAbsolute(pointer) ? pointer : `${dir}/${pointer}`;
  const whole = await fs.realpath(joined).catch(() => undefined);
  if (whole) return whole;
  const folder = await fs.realpath(path.dirname(joined)).catch(() => undefined);
  return folder === undefined ? undefined : path.join(folder, path.basename(joined));
}

async function writeConfig(options: ExecuteOptions): Promise<void> {
  const { plan, configBytes, sourceType } = options;
  const configDir = path.dirname(plan.configDestination);
  const made = await makeFolders(configDir);
  const pointers = new Map<string, string>();
  for (const disk of plan.disks) {
    if (disk.entry.via !== 'attached' || !disk.entry.slot) continue;
    // In place, a pointer keeps the form the config wrote (libvirt wants absolute paths); in a folder, a disk restored
    // inside it is named relative to the config, so the folder can be moved as a whole.
    // A VM restored as a new one is defined where it was restored: absolute (libvirt refuses relative sources).
    const insideTree = options.asNew ? false : plan.target.kind === 'in-place' ? !path.isAbsolute(disk.entry.target ?? '/') : isInside(plan.root, disk.pointTo);
    pointers.set(disk.entry.slot, insideTree ? path.relative(configDir, disk.pointTo) : disk.pointTo);
  }
  const text = configBytes.toString('utf8');
  const repointed = sourceType === 'libvirt' ? rewriteLibvirtDisks(text, pointers) : rewriteVmxDisks(text, pointers);
  const rewritten = options.asNew && sourceType === 'libvirt' ? renameLibvirtDomain(repointed, options.asNew.name, options.asNew.uuid) : repointed;
  if (options.defineDomain && plan.target.kind === 'in-place') {
    // libvirt owns its XML files: a file written behind its back is overwritten or ignored.
    await options.defineDomain(rewritten).catch((err: unknown) => {
      // The disks are in place already: say so, and that the domain's definition is as it was.
      throw new InputError(`${plan.vm}: its disks were restored in place, but libvirt did not take its definition (${(err as Error).message}); the domain is defined as it was before the restore`);
    });
    return;
  }
  const temp = tempNameFor(plan.configDestination);
  // In place the config replaces the VM's own file: it keeps that file's permission bits and owner (the backup
  // does not record them; 0600 root would lock out a VMware host or a user's hypervisor).
  const replaced = plan.target.kind === 'in-place' ? await fs.lstat(plan.configDestination).catch(() => undefined) : undefined;
  try {
    await fs.writeFile(temp, rewritten, { flag: CREATE_FLAGS, mode: 0o600 });
    if (replaced?.isFile()) await applyOwnership({ temp, final: plan.configDestination, mode: replaced.mode, uid: replaced.uid, gid: replaced.gid });
    await syncFile(temp);
    await fs.rename(temp, await checkInside(plan.areas, plan.configDestination, 'the config'));
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await syncDirs([configDir, ...made.map((folder) => path.dirname(folder))]);
}

/** Target folder empty or new (its state is returned); enough free space; in place, no other process holds a file open. */
async function checkDestinations(plan: RestorePlan, toWrite: PlannedDisk[], bytes: number): Promise<'new' | 'resume' | undefined> {
  const folderState = plan.target.kind === 'folder' ? await checkTargetFolder(plan.target.dir, { vm: plan.vm, backupId: plan.backupId }) : undefined;
  const probe = plan.target.kind === 'folder' ? plan.target.dir : path.dirname(plan.configDestination);
  const existing = await nearestExisting(probe);
  const stats = await fs.statfs(existing);
  const free = stats.bavail * stats.bsize;
  if (free < bytes) {
    throw new InputError(`not enough free space: the restore writes ${formatGiB(bytes)} and ${existing} has ${formatGiB(free)} free`, { file: probe });
  }
  if (plan.target.kind === 'in-place') {
    const holders = await openFileHolders(new Set(toWrite.flatMap((d) => d.files!.map((f) => f.destination))));
    const [[file, pid] = []] = holders;
    if (file) throw new InputError(`in use by process ${pid}: stop the VM (or that process) before restoring in place`, { file });
  }
  return folderState;
}

async function nearestExisting(dir: string): Promise<string> {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    if (await fs.access(current).then(() => true, () => false)) return current;
    if (path.dirname(current) === current) return current;
  }
}

/** Files among `paths` that a process holds open, found through /proc (Linux); empty elsewhere. */
async function openFileHolders(paths: Set<string>): Promise<[string, number][]> {
  const found: [string, number][] = [];
  const pids = await fs.readdir('/proc').catch(() => [] as string[]);
  for (const pid of pids) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const fds = await fs.readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (paths.has(target)) found.push([target, Number(pid)]);
    }
  }
  return found;
}

function formatGiB(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
