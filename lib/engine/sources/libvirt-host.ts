/**
 * A live libvirt connection (`virsh -c <uri>`): the domains a host defines or runs, their XML and state, the folders
 * of its storage pools, and the moves that back up a running domain at one point in time (an external disk-only
 * snapshot, then a commit back). Only local QEMU connections: the disks must be files this process can read.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InputError } from '../errors';
import { decodeXmlText, editLibvirtDisks, escapeXml, libvirtDiskBlocks, targetDevOf } from './libvirt';
import { addBitmap, addMarker, bitmapsOf, dirtyRanges, dirtyRangesOfFile, removeBitmap } from './dirty-bitmaps';
import type { ByteRange } from './unchanged-ranges';
import { untilTrustable } from './version-token';

/** The local QEMU connections a source may name, and the folder libvirt keeps their persistent domains' XML in. */
export function libvirtConfigFolder(uri: string): string {
  if (uri === 'qemu:///system') return '/etc/libvirt/qemu';
  if (uri === 'qemu:///session') return path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), 'libvirt', 'qemu');
  throw new InputError(`libvirt URI '${uri}' is not supported: use qemu:///system or qemu:///session (the disks must be files on this host)`);
}

const VIRSH_TIMEOUT_MS = 120_000;

/** Runs virsh against `uri`; its own error message (one line) when it fails. */
export function virsh(uri: string, args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('virsh', ['-q', '-c', uri, ...args], { timeout: options.timeoutMs ?? VIRSH_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new InputError('virsh is not installed (Debian: apt-get install libvirt-clients)'));
      const said = stderr.split('\n').map((line) => line.replace(/^error:\s*/, '').trim()).filter(Boolean).join('; ');
      reject(new InputError(`virsh ${args[0]} failed: ${said || err.message}`));
    });
  });
}

export type DomainState = 'running' | 'paused' | 'shut off' | string;

export type LibvirtDomain = {
  name: string;
  persistent: boolean;
  state: DomainState;
  /** The XML a restore defines: the persistent definition (`dumpxml --inactive`), or a transient domain's live XML. */
  definition: Buffer;
  /** What the domain runs on now (`dumpxml`): its disks' current sources. Same as `definition` when shut off. */
  live: Buffer;
  /** Set when its state or XML could not be read (then both are empty). */
  error?: string;
};

/** Whether a domain in this state has a QEMU process holding its disks (and may write them). */
export function isLive(state: DomainState): boolean {
  return state !== 'shut off' && state !== 'crashed';
}

/** virsh's list of names, one a line, as libvirt has them: a name may begin with '-' or end with a space (never
 *  holds a newline). */
function namesOf(out: string): string[] {
  return out.split('\n').filter((line) => line !== '');
}

/** Every domain of the connection, persistent and transient, with its state and XML. A domain gone since the list
 *  is left out; one that cannot be read has `error` (the others are still read). */
export async function listDomains(uri: string): Promise<LibvirtDomain[]> {
  const names = namesOf(await virsh(uri, ['list', '--all', '--name']));
  const persistent = new Set(namesOf(await virsh(uri, ['list', '--all', '--name', '--persistent'])));
  const domains: LibvirtDomain[] = [];
  for (const name of names.sort()) {
    try {
      const state = (await virsh(uri, ['domstate', '--domain', name])).trim();
      const live = Buffer.from(await virsh(uri, ['dumpxml', '--domain', name]));
      const definition = persistent.has(name) && isLive(state) ? Buffer.from(await virsh(uri, ['dumpxml', '--inactive', '--domain', name])) : live;
      domains.push({ name, persistent: persistent.has(name), state, definition, live });
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      // A transient domain that shut down, or one undefined, since the list: not a domain of the host any more.
      if (/domain not found|failed to get domain/i.test(err.message)) continue;
      domains.push({ name, persistent: persistent.has(name), state: 'unknown', definition: Buffer.alloc(0), live: Buffer.alloc(0), error: `domain ${name} cannot be read: ${err.message}` });
    }
  }
  return domains;
}

/** The target folders of the connection's directory-like storage pools (dir, fs, netfs): where its disks live. */
export async function poolFolders(uri: string): Promise<string[]> {
  const pools = namesOf(await virsh(uri, ['pool-list', '--all', '--name']));
  const folders: string[] = [];
  for (const pool of pools) {
    const xml = await virsh(uri, ['pool-dumpxml', '--pool', pool]).catch(() => '');
    const type = /<pool\b[^>]*\btype=['"]([^'"]+)['"]/.exec(xml)?.[1];
    const target = /<target>[\s\S]*?<path>([^<]+)<\/path>/.exec(xml)?.[1]?.trim();
    if (target && path.isAbsolute(target) && (type === 'dir' || type === 'fs' || type === 'netfs')) folders.push(target);
  }
  return folders;
}

/** A snapshot overlay this tool made beside a disk while it was backed up: `<disk>.vmdedup-<tag>.qcow2`. */
const OVERLAY = /^(.+)\.vmdedup-[0-9a-z]+\.qcow2$/;

export type LiveDisk = { dev: string; file?: string; format: string; device: string; readonly: boolean; shareable: boolean; copyOnRead: boolean };

/** An XML attribute's value as text. */
const decode = (value: string | undefined) => (value === undefined ? undefined : decodeXmlText(value));

/** A domain XML's disks as libvirt runs them: target, file, device and flags (nested backing stores skipped). */
export function disksOf(xml: string): LiveDisk[] {
  const disks: LiveDisk[] = [];
  for (const block of libvirtDiskBlocks(xml)) {
    const head = /<disk\b[^>]*>/.exec(block)![0];
    // The disk's own source comes before any <backingStore> (whose sources are its parents).
    const own = block.split('<backingStore')[0];
    disks.push({
      dev: targetDevOf(block) ?? '',
      file: decode(/<source\b[^>]*\bfile=(['"])(.*?)\1/.exec(own)?.[2]),
      format: /<driver\b[^>]*\btype=(['"])(.*?)\1/.exec(own)?.[2] ?? 'raw',
      device: /\bdevice=(['"])(.*?)\1/.exec(head)?.[2] ?? 'disk',
      readonly: /<readonly\s*\/>/.test(own), shareable: /<shareable\s*\/>/.test(own),
      copyOnRead: /<driver\b[^>]*\bcopy_on_read=(['"])on\1/.test(own),
    });
  }
  return disks;
}

/** The disks a killed backup left a domain on (by target dev), each with the disk its overlay stands for and that
 *  disk's format (the overlay is qcow2 whatever the disk under it is). */
export function snapshotOverlaysOf(liveXml: Buffer): Map<string, { original: string; format: string }> {
  const overlays = new Map<string, { original: string; format: string }>();
  for (const block of libvirtDiskBlocks(liveXml.toString('utf8'))) {
    const [disk] = disksOf(block);
    const original = disk.file ? OVERLAY.exec(disk.file)?.[1] : undefined;
    // The disk under the overlay is its first backing store, whose format libvirt names. Only a file whose backing
    // file is the very disk its name stands for is one of ours: a linked clone merely named `x.vmdedup-1.qcow2` (its
    // backing file a base other VMs share) must never be committed into that base, nor removed. A shut-off domain's
    // XML names no backing store at all: taken by its name (such a domain is refused, never committed).
    const chain = block.split('<backingStore');
    const under = chain[1] ?? '';
    const underFile = decode(/<source\b[^>]*\bfile=(['"])(.*?)\1/.exec(under)?.[2]);
    const format = /<format\b[^>]*\btype=(['"])(.*?)\1/.exec(under)?.[2] ?? 'raw';
    if (original && (chain.length === 1 || underFile === original)) overlays.set(disk.dev, { original, format });
  }
  return overlays;
}

/**
 * A domain XML as it was before a killed backup's snapshot: each overlaid disk's own source and driver type put back,
 * and the backing store that names the disk under the overlay taken out (libvirt wrote it for the overlay).
 */
export function withoutOverlays(xml: Buffer, overlays: Map<string, { original: string; format: string }>): Buffer {
  if (overlays.size === 0) return xml;
  const text = editLibvirtDisks(xml.toString('utf8'), (block, dev) => {
    const left = dev === undefined ? undefined : overlays.get(dev);
    if (!left) return block;
    const cut = backingStoreRange(block);
    const own = cut ? block.slice(0, cut[0]) + block.slice(cut[1]) : block;
    return own
      .replace(/(<source\b[^>]*\bfile=)(['"])(.*?)\2/, (_m, start: string) => `${start}'${escapeXml(left.original)}'`)
      .replace(/(<driver\b[^>]*\btype=)(['"])(.*?)\2/, (_m, start: string) => `${start}'${escapeXml(left.format)}'`);
  });
  return Buffer.from(text);
}

/** Where a disk block's outermost <backingStore> element starts and ends (nested ones inside it), if it has one. */
function backingStoreRange(block: string): [number, number] | undefined {
  const start = block.search(/<backingStore\b/);
  if (start < 0) return undefined;
  const tags = /<backingStore\b[^>]*?(\/)?>|<\/backingStore>/g;
  tags.lastIndex = start;
  let depth = 0;
  for (let tag = tags.exec(block); tag; tag = tags.exec(block)) {
    if (tag[0].startsWith('</')) depth--;
    else if (!tag[1]) depth++;
    if (depth === 0) return [start, tag.index + tag[0].length];
  }
  return undefined;
}

export type Consistency = 'application' | 'crash' | 'offline';

/** A domain held still for its backup: `consistency` says how; `thaw` puts it back as it was (an error message when
 *  the backup must not be kept: a shut-off domain that started meanwhile). Its qcow2 disks are tracked by a
 *  checkpoint (`changes`), so that its next backup reads only what changed. */
export type HeldDomain = { consistency: Consistency; thaw(): Promise<{ error?: string; warning?: string }>; changes?: ChangeTracking };

export type ChangeTracking = {
  /** The checkpoint a later backup asks what changed since: a running domain's is taken just before the hold's
   *  point in time; a shut-off one's by `take`. */
  checkpoint: string;
  /** The disk files it tracks (as the domain names them) and their target devs. */
  tracked: Map<string, string>;
  /** This tool's checkpoints the domain had before this one, newest first. */
  earlier: string[];
  /** Makes sure the checkpoint tracks these disks (by target dev) before they are read. A running domain's tracks
   *  them all already. A shut-off domain's is taken here, on these disks only: it adds a bitmap to each file, so
   *  an unchanged disk, not read again, is left as it is. Rejects (an InputError) when it cannot. */
  take(devs: string[]): Promise<void>;
  /** The guest ranges of each disk (by target dev) written since checkpoint `from` was taken; rejects (an
   *  InputError) on any doubt: a checkpoint missing or inconsistent, a bitmap that cannot be read. */
  changedSince(from: string, devs: string[]): Promise<Map<string, ByteRange[]>>;
  /** Deletes this tool's checkpoints of the domain but `keep`; a warning naming those it could not delete. `devs`
   *  (a shut-off domain's): only these disks' older bitmaps go (the others' content is recorded under older
   *  checkpoints), and a checkpoint once no disk has its bitmap. */
  keepOnly(keep: string[], devs?: string[]): Promise<string | undefined>;
};

/**
 * Holds a domain still for its backup. A running (or paused) one: its writable disks get an external disk-only
 * snapshot (`--atomic --no-metadata`, with the guest agent's freeze when it answers), so the disk files stop changing
 * at one point in time across all of them; `thaw` commits each overlay back into its disk (`--shallow`: never into a
 * base) and removes it. A shut-off one is left as it is, and `thaw` checks that it did not start meanwhile.
 * First, whatever overlay a killed backup left the domain on is committed back.
 */
export async function holdDomain(uri: string, name: string): Promise<HeldDomain> {
  const state = (await virsh(uri, ['domstate', '--domain', name])).trim();
  const first = await virsh(uri, ['dumpxml', '--domain', name]);
  const left = snapshotOverlaysOf(Buffer.from(first));
  if (left.size > 0 && !isLive(state)) {
    // Its disk now is the overlay and what is under it: reading the disk under it alone would miss the newest writes.
    throw new InputError(`domain ${name} is ${state} on a snapshot overlay a killed backup left (${[...left.keys()].join(', ')}): start it and back it up again (the backup commits the overlay back), or commit it with qemu-img commit`);
  }
  if (isLive(state)) {
    await abortLeftoverJob(uri, name);
    // Someone else's job (a backup by another tool, a migration): libvirt would refuse the snapshot only after its
    // state-change lock times out, in its own words.
    const job = await virsh(uri, ['domjobinfo', '--domain', name]).catch(() => '');
    const type = /^Job type:\s*(\S+)/m.exec(job)?.[1];
    if (type && type !== 'None') {
      const operation = /^Operation:\s*(.+)$/m.exec(job)?.[1]?.trim().toLowerCase() ?? 'unknown';
      throw new InputError(`domain ${name} is busy with a job that is not vmdedup's (${operation}): not backed up; the next backup once it ends (virsh domjobabort ${name} ends it)`);
    }
  }
  if (left.size > 0) await commitLeftovers(uri, name);
  const xml = left.size > 0 ? await virsh(uri, ['dumpxml', '--domain', name]) : first;
  const stray = await strayOverlays(disksOf(xml));
  const strayWarning = stray.length ? `domain ${name} no longer runs on ${stray.join(', ')} (an overlay a backup killed after its commit left beside the disk): remove it unless another domain uses it` : undefined;
  const withStray = (outcome: { error?: string; warning?: string }) => (strayWarning ? { ...outcome, warning: [outcome.warning, strayWarning].filter(Boolean).join('; ') } : outcome);
  if (!isLive(state)) {
    const changes = await offlineTracking(uri, name, disksOf(xml));
    return {
      consistency: 'offline',
      ...(changes ? { changes } : {}),
      thaw: async () => {
        const now = (await virsh(uri, ['domstate', '--domain', name]).catch(() => 'unknown')).trim();
        return withStray(isLive(now) ? { error: `domain ${name} started while its disks were read (now ${now}): not backed up; the next backup holds it still` } : {});
      },
    };
  }
  const tag = `${Date.now().toString(36)}${process.pid.toString(36)}`;
  const specs: string[] = [];
  const overlays: { dev: string; overlay: string }[] = [];
  for (const disk of disksOf(xml)) {
    // Only a file a guest writes alone gets an overlay: a read-only disk does not change, and a disk shared for
    // writing (multi-writer) cannot be held still by one of its writers.
    if (disk.device === 'disk' && disk.file && !disk.readonly && !disk.shareable) {
      const overlay = `${disk.file}.vmdedup-${tag}.qcow2`;
      // virsh splits a --diskspec on commas: one in the file's name is written twice.
      specs.push('--diskspec', `${disk.dev},snapshot=external,file=${overlay.replace(/,/g, ',,')}`);
      overlays.push({ dev: disk.dev, overlay });
    } else if (disk.dev) specs.push('--diskspec', `${disk.dev},snapshot=no`);
  }
  if (overlays.length === 0) return { consistency: 'crash', thaw: async () => withStray({}) };
  // Before the point in time, so that it misses no write after it (what it marks more costs a read, never a miss).
  const changes = await takeCheckpoint(uri, name, disksOf(xml));
  const snapshot = (quiesce: boolean) => virsh(uri, ['snapshot-create-as', '--domain', name, '--disk-only', '--atomic', '--no-metadata', ...(quiesce ? ['--quiesce'] : []), ...specs]);
  let consistency: Consistency = 'crash';
  if (/org\.qemu\.guest_agent\.0/.test(xml)) {
    // The agent's freeze makes the file systems inside consistent; without an answering agent, crash-consistent.
    consistency = await snapshot(true).then(() => 'application' as const, () => 'crash' as const);
  }
  if (consistency === 'crash') await snapshot(false);
  return {
    consistency,
    ...(changes.tracking ? { changes: changes.tracking } : {}),
    thaw: async () => {
      const failed: string[] = [];
      for (const { dev, overlay } of overlays) {
        try {
          await virsh(uri, ['blockcommit', '--domain', name, '--path', dev, '--active', '--pivot', '--shallow', '--wait'], { timeoutMs: 3_600_000 });
          await fs.rm(overlay, { force: true });
        } catch (err) {
          failed.push(`${dev} (${(err as Error).message})`);
        }
      }
      const warning = [
        failed.length ? `domain ${name} still runs on the backup's snapshot overlay of ${failed.join(', ')}: the next backup commits it back` : undefined,
        changes.warning,
      ].filter(Boolean).join('; ');
      return withStray(warning ? { warning } : {});
    },
  };
}

/** Files named as this tool's overlays of a domain's disks (`<disk>.vmdedup-<tag>.qcow2`, beside it) that the domain
 *  does not use: a backup killed between its commit's pivot and the removal left them. Never removed here (another
 *  domain could use a file so named); the backup warns. */
async function strayOverlays(disks: LiveDisk[]): Promise<string[]> {
  const inUse = new Set(disks.flatMap((disk) => (disk.file ? [disk.file] : [])));
  const stray: string[] = [];
  for (const file of inUse) {
    const names = await fs.readdir(path.dirname(file)).catch(() => [] as string[]);
    for (const name of names) {
      const candidate = path.join(path.dirname(file), name);
      if (OVERLAY.exec(candidate)?.[1] === file && !inUse.has(candidate)) stray.push(candidate);
    }
  }
  return stray;
}

/** Commits back, and removes, the overlays a killed backup left a running domain on. A backup killed while virsh
 *  waited for its commit may have left that commit's job running (or ready, never pivoted): it is finished first. */
async function commitLeftovers(uri: string, name: string): Promise<void> {
  const live = await virsh(uri, ['dumpxml', '--domain', name]);
  for (const [dev] of snapshotOverlaysOf(Buffer.from(live))) {
    const overlay = disksOf(live).find((disk) => disk.dev === dev)!.file!;
    // The disk's <mirror job='active-commit'>: that commit's job, still there.
    const block = libvirtDiskBlocks(live).find((candidate) => targetDevOf(candidate) === dev) ?? '';
    const mirror = /<mirror\b[^>]*\bjob=(['"])active-commit\1[^>]*>/.exec(block)?.[0];
    if (mirror) {
      // Ready: pivoted onto the disk. Not yet (or the pivot failed): stopped, and committed again below.
      const ready = /\bready=(['"])yes\1/.test(mirror);
      const pivoted = ready && (await virsh(uri, ['blockjob', '--domain', name, '--path', dev, '--pivot'], { timeoutMs: 3_600_000 }).then(() => true, () => false));
      if (pivoted) {
        await fs.rm(overlay, { force: true });
        continue;
      }
      await virsh(uri, ['blockjob', '--domain', name, '--path', dev, '--abort', '--wait'], { timeoutMs: 3_600_000 });
    }
    await virsh(uri, ['blockcommit', '--domain', name, '--path', dev, '--active', '--pivot', '--shallow', '--wait'], { timeoutMs: 3_600_000 });
    await fs.rm(overlay, { force: true });
  }
}

/** A domain's state, or undefined when the connection has no domain of that name. */
export async function domainState(uri: string, name: string): Promise<DomainState | undefined> {
  const names = namesOf(await virsh(uri, ['list', '--all', '--name']));
  return names.includes(name) ? (await virsh(uri, ['domstate', '--domain', name])).trim() : undefined;
}

/** Defines (or redefines) a domain from its XML through libvirt, as `virsh define` does; it is not started. */
export async function defineDomain(uri: string, xml: string): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmdedup-define-'));
  try {
    const file = path.join(dir, 'domain.xml');
    await fs.writeFile(file, xml, { mode: 0o600 });
    await virsh(uri, ['define', file]);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** The checkpoints this tool takes: `vmdedup-<time><pid>`, the time fixed-width so that names sort by age. */
const CHECKPOINT = /^vmdedup-[0-9a-z]{9,}$/;
/** The export a pull backup job serves its bitmaps on: a socket in a folder of this name (a killed backup's job is
 *  known by it). */
const NBD_FOLDER = 'vmdedup-nbd-';

/** A disk a checkpoint can track: a qcow2 file the guest writes alone (raw files cannot carry a bitmap). Not one
 *  with copy-on-read: QEMU then fills clusters from the backing file without a guest write, which no bitmap marks. */
const trackable = (disk: LiveDisk) => disk.device === 'disk' && !!disk.file && disk.format === 'qcow2' && !disk.readonly && !disk.shareable && !disk.copyOnRead && /^[a-z0-9]+$/.test(disk.dev);

/** The disks a checkpoint tracks: file → target dev. */
const trackedOf = (disks: LiveDisk[]) => new Map(disks.filter(trackable).map((disk) => [disk.file!, disk.dev]));

/** This tool's checkpoints of a domain, newest first. */
async function ourCheckpoints(uri: string, name: string): Promise<string[]> {
  return namesOf(await virsh(uri, ['checkpoint-list', '--domain', name, '--name'])).filter((n) => CHECKPOINT.test(n)).sort().reverse();
}

/** The disabled bitmap that names, in a shut-off domain's disk file, the disk (target dev) a checkpoint took it as. */
const markerOf = (checkpoint: string, dev: string) => `${checkpoint}-${dev}`;
const MARKER = /^(vmdedup-[0-9a-z]{9,})-([a-z0-9]+)$/;

const newCheckpointName = () => `vmdedup-${Date.now().toString(36).padStart(9, '0')}${process.pid.toString(36)}`;

/**
 * Takes a checkpoint of a running domain's qcow2 disks (every other disk named `checkpoint=no`: one left unnamed
 * would silently get no bitmap either). Nothing to track, or a libvirt that refuses: no tracking (every disk is read
 * whole), and a warning for the refusal.
 */
async function takeCheckpoint(uri: string, name: string, disks: LiveDisk[]): Promise<{ tracking?: ChangeTracking; warning?: string }> {
  const tracked = trackedOf(disks);
  if (tracked.size === 0) return {};
  let earlier: string[];
  try {
    earlier = await ourCheckpoints(uri, name);
  } catch (err) {
    return { warning: `${name}: changes are not tracked, its disks are read whole (${(err as Error).message})` };
  }
  const checkpoint = newCheckpointName();
  const specs = disks.filter((disk) => disk.dev).flatMap((disk) => ['--diskspec', `${disk.dev},checkpoint=${tracked.get(disk.file ?? '') === disk.dev ? 'bitmap' : 'no'}`]);
  try {
    await virsh(uri, ['checkpoint-create-as', '--domain', name, '--name', checkpoint, ...specs]);
  } catch (err) {
    return { warning: `${name}: changes are not tracked, its disks are read whole (${(err as Error).message})` };
  }
  return {
    tracking: {
      checkpoint, tracked, earlier,
      take: async () => undefined,
      changedSince: (from, devs) => changedSince(uri, name, disks, from, devs),
      keepOnly: async (keep) => {
        const failed: string[] = [];
        // Oldest first: each deleted one's bitmap merges into nothing older (what it marked, newer ones mark too).
        for (const old of (await ourCheckpoints(uri, name).catch(() => [])).filter((n) => !keep.includes(n)).reverse()) {
          await virsh(uri, ['checkpoint-delete', '--domain', name, '--checkpointname', old])
            // A broken one (QEMU killed, host crash) cannot merge its bitmap: its metadata goes, its bitmap stays unused.
            .catch(() => virsh(uri, ['checkpoint-delete', '--domain', name, '--checkpointname', old, '--metadata']))
            .catch((err: Error) => failed.push(`${old} (${err.message})`));
        }
        return failed.length ? `${name}: checkpoints not deleted: ${failed.join(', ')}` : undefined;
      },
    },
  };
}

/**
 * The change tracking of a shut-off domain's qcow2 disks. libvirt takes and deletes no checkpoint of a shut-off
 * domain: its bitmaps are kept in the files with qemu-img (persistent bitmaps, which any QEMU that opens the file
 * then updates) and libvirt is told of each checkpoint (`--redefine`), so that a backup of the domain running again
 * reads from it as from one taken while it ran. What changed is read from the file by qemu-nbd (`--bitmap`).
 * Undefined when nothing is tracked or libvirt cannot list checkpoints (every disk is read whole).
 */
export async function offlineTracking(uri: string, name: string, disks: LiveDisk[]): Promise<ChangeTracking | undefined> {
  const tracked = trackedOf(disks);
  if (tracked.size === 0) return undefined;
  const earlier = await ourCheckpoints(uri, name).catch(() => undefined);
  if (!earlier) return undefined;
  const fileOf = new Map([...tracked].map(([file, dev]) => [dev, file]));
  const checkpoint = newCheckpointName();
  return {
    checkpoint, tracked, earlier,
    take: async (devs) => {
      const added: string[] = [];
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmdedup-checkpoint-'));
      try {
        // Fails while a QEMU has the file open (the domain started since): its lock is taken for writing.
        for (const dev of devs) {
          added.push(dev);
          await addBitmap(fileOf.get(dev)!, checkpoint);
          await addMarker(fileOf.get(dev)!, markerOf(checkpoint, dev));
        }
        const entries = disks.filter((disk) => disk.dev).map((disk) => (devs.includes(disk.dev)
          ? `<disk name='${escapeXml(disk.dev)}' checkpoint='bitmap' bitmap='${checkpoint}'/>`
          : `<disk name='${escapeXml(disk.dev)}' checkpoint='no'/>`));
        const xml = path.join(dir, 'checkpoint.xml');
        await fs.writeFile(xml, `<domaincheckpoint><name>${checkpoint}</name><creationTime>${Math.floor(Date.now() / 1000)}</creationTime><disks>${entries.join('')}</disks></domaincheckpoint>\n`);
        await virsh(uri, ['checkpoint-create', '--domain', name, '--xmlfile', xml, '--redefine']);
      } catch (err) {
        for (const dev of added) {
          for (const bitmap of [checkpoint, markerOf(checkpoint, dev)]) await removeBitmap(fileOf.get(dev)!, bitmap).catch(() => undefined);
        }
        throw err instanceof InputError ? err : new InputError(`${name}: no checkpoint taken (${(err as Error).message})`);
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
      // Written just now: the disk is then recorded with a version a later backup trusts.
      await untilTrustable(added.map((dev) => fileOf.get(dev)!));
    },
    changedSince: async (from, devs) => {
      if (!CHECKPOINT.test(from)) throw new InputError(`checkpoint ${from}: not one this tool took`);
      const changed = new Map<string, ByteRange[]>();
      for (const dev of devs) {
        const file = fileOf.get(dev);
        if (!file) throw new InputError(`${name}: ${dev} is not tracked`);
        // Another disk's file copied over this one (cp: the same inode) brings that disk's bitmaps, whose marks
        // are not this disk's changes: a checkpoint taken here names its disk in each file (a libvirt one does not).
        const markers = (await bitmapsOf(file)).map((b) => MARKER.exec(b.name)).filter((m) => m?.[1] === from);
        if (markers.length && !markers.some((m) => m![2] === dev)) throw new InputError(`${file}: bitmap ${from} is another disk's (${markers.map((m) => m![2]).join(', ')}): copied over it?`);
        changed.set(dev, await dirtyRangesOfFile(file, from).catch((err: Error) => { throw inconsistent(from, err); }));
      }
      return changed;
    },
    keepOnly: async (keep, devs) => {
      // Started since: its QEMU has the files; the next backup deletes what this one leaves.
      if (isLive((await virsh(uri, ['domstate', '--domain', name]).catch(() => 'unknown')).trim())) return undefined;
      const failed = new Map<string, string>();
      // Bitmaps first, then the checkpoints whose bitmaps are all gone (none when a file's could not be listed).
      // Ours without a checkpoint (its redefine failed; the domain was undefined and defined again) go too.
      let listed = true;
      const written = new Set<string>();
      // The checkpoints some disk left out of `devs` still has a bitmap of.
      const stillUsed = new Set<string>();
      for (const [file, dev] of tracked) {
        const names = await bitmapsOf(file).then((all) => all.map((b) => b.name), (err: Error) => {
          listed = false;
          failed.set(file, err.message);
          return [] as string[];
        });
        if (devs && !devs.includes(dev)) {
          for (const n of names) if (CHECKPOINT.test(n)) stillUsed.add(n);
          continue;
        }
        for (const old of names.filter((n) => (CHECKPOINT.test(n) && !keep.includes(n)) || (MARKER.test(n) && !keep.includes(MARKER.exec(n)![1])))) {
          written.add(file);
          await removeBitmap(file, old).catch((err: Error) => failed.set(old, err.message));
        }
      }
      await untilTrustable([...written]);
      const deletable = listed ? (await ourCheckpoints(uri, name).catch(() => [])).filter((n) => !keep.includes(n) && !failed.has(n) && !stillUsed.has(n)) : [];
      for (const old of deletable) {
        await virsh(uri, ['checkpoint-delete', '--domain', name, '--checkpointname', old, '--metadata']).catch((err: Error) => failed.set(old, err.message));
      }
      return failed.size ? `${name}: checkpoints not deleted: ${[...failed].map(([what, why]) => `${what} (${why})`).join(', ')}` : undefined;
    },
  };
}

/**
 * What the guest wrote on these disks since checkpoint `from`: a pull backup job (`virsh backup-begin`, incremental
 * from it, no new checkpoint) serves each disk's dirty bitmap over a unix socket, nbdinfo reads it, and the job is
 * aborted (no data is copied; the checkpoints stay).
 */
async function changedSince(uri: string, name: string, disks: LiveDisk[], from: string, devs: string[]): Promise<Map<string, ByteRange[]>> {
  if (!CHECKPOINT.test(from) || devs.some((dev) => !/^[a-z0-9]+$/.test(dev))) throw new InputError(`checkpoint ${from}: not one this tool took`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), NBD_FOLDER));
  try {
    await shareWithQemu(dir);
    const socket = path.join(dir, 'nbd.sock');
    const entries = disks.filter((disk) => disk.dev).map((disk) => (devs.includes(disk.dev)
      ? `<disk name='${escapeXml(disk.dev)}' backup='yes' type='file'><scratch file='${escapeXml(path.join(dir, `${disk.dev}.scratch.qcow2`))}'/></disk>`
      : `<disk name='${escapeXml(disk.dev)}' backup='no'/>`));
    const xml = path.join(dir, 'backup.xml');
    await fs.writeFile(xml, `<domainbackup mode='pull'><incremental>${escapeXml(from)}</incremental><server transport='unix' socket='${escapeXml(socket)}'/><disks>${entries.join('')}</disks></domainbackup>\n`);
    await virsh(uri, ['backup-begin', '--domain', name, '--backupxml', xml]).catch((err: Error) => { throw inconsistent(from, err); });
    try {
      const changed = new Map<string, ByteRange[]>();
      for (const dev of devs) changed.set(dev, await dirtyRanges([`nbd+unix:///${dev}?socket=${encodeURIComponent(socket)}`], `qemu:dirty-bitmap:backup-${dev}`));
      return changed;
    } finally {
      await virsh(uri, ['domjobabort', '--domain', name]).catch(() => undefined);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** A checkpoint's bitmap that QEMU did not store cleanly (libvirt and qemu-nbd call it inconsistent) said in plain
 *  words; any other failure as it came. */
function inconsistent(checkpoint: string, err: Error): Error {
  return /inconsistent/i.test(err.message)
    ? new InputError(`checkpoint ${checkpoint} is inconsistent: its QEMU was killed, or the host crashed, after it was taken`)
    : err;
}

/** QEMU (the system connection runs it as libvirt-qemu) makes its socket and scratch files in this folder. */
async function shareWithQemu(dir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const passwd = await fs.readFile('/etc/passwd', 'utf8').catch(() => '');
  const entry = passwd.split('\n').map((line) => line.split(':')).find((fields) => fields[0] === 'libvirt-qemu');
  if (entry) await fs.chown(dir, Number(entry[2]), Number(entry[3]));
}

/** A pull backup job a killed backup left (its socket in a folder of ours) is aborted; anyone else's is left. */
async function abortLeftoverJob(uri: string, name: string): Promise<void> {
  const xml = await virsh(uri, ['backup-dumpxml', '--domain', name]).catch(() => '');
  const socket = decode(/<server\b[^>]*\bsocket=(['"])(.*?)\1/.exec(xml)?.[2]);
  if (socket && path.basename(path.dirname(socket)).startsWith(NBD_FOLDER)) {
    await virsh(uri, ['domjobabort', '--domain', name]).catch(() => undefined);
    await fs.rm(path.dirname(socket), { recursive: true, force: true });
  }
}
