/**
 * Dirty bitmaps: what the guest wrote since a point in time, as QEMU tracks it. Read over NBD (`nbdinfo --map` of a
 * bitmap's metadata context), from a running domain's pull backup job or from a qemu-nbd serving a shut-off domain's
 * qcow2 file; and the persistent bitmaps of a qcow2 file kept with qemu-img while no QEMU has the file open.
 */
import { execFile } from 'node:child_process';
import { InputError } from '../errors';
import type { ByteRange } from './unchanged-ranges';

const TOOL_TIMEOUT_MS = 120_000;

function tool(command: string, args: string[], install: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: TOOL_TIMEOUT_MS, maxBuffer: 1024 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new InputError(`${command} is not installed (Debian: apt-get install ${install})`));
      // nbdinfo prints the server's complaint (qemu-nbd's "Bitmap … is inconsistent") before its own.
      const lines = stderr.trim().split('\n').filter(Boolean);
      reject(new InputError(`${command} failed: ${lines.find((line) => !line.startsWith('nbdinfo:')) ?? lines[0] ?? err.message}`));
    });
  });
}

/** The dirty ranges of a bitmap context of an NBD export (extents whose type has bit 0 set). `target`: nbdinfo's
 *  arguments naming the export (a URL, or `[ server command ]` for nbdinfo to start). */
export async function dirtyRanges(target: string[], context: string): Promise<ByteRange[]> {
  const stdout = await tool('nbdinfo', ['--json', `--map=${context}`, ...target], 'libnbd-bin');
  try {
    const extents = JSON.parse(stdout) as { offset: number; length: number; type: number }[];
    if (!Array.isArray(extents) || extents.some((e) => !Number.isSafeInteger(e.offset) || !Number.isSafeInteger(e.length) || !Number.isSafeInteger(e.type))) throw new Error('not a list of extents');
    return extents.filter((e) => (e.type & 1) === 1).map((e) => ({ start: e.offset, end: e.offset + e.length }));
  } catch (parseError) {
    throw new InputError(`nbdinfo --map: ${(parseError as Error).message}`);
  }
}

/** A qcow2 option value as --image-opts takes it (a comma is written twice). */
const optionValue = (value: string) => value.replace(/,/g, ',,');

/**
 * What was written to a qcow2 file (not open in any QEMU) since its persistent bitmap `bitmap` was added: qemu-nbd
 * serves the file read-only with the bitmap, nbdinfo reads it. Without locking the file: a domain that starts
 * meanwhile is not kept from starting (its backup is then refused by the hold). Rejects when the bitmap is missing or
 * inconsistent (its QEMU was killed, the host crashed).
 */
export async function dirtyRangesOfFile(file: string, bitmap: string): Promise<ByteRange[]> {
  // A disabled bitmap (qemu-img bitmap --disable, another tool's) marks no write since: qemu-nbd serves it all the same.
  const found = (await bitmapsOf(file)).find((b) => b.name === bitmap);
  if (found && !found.enabled) throw new InputError(`${file}: bitmap ${bitmap} is disabled (it does not mark every write since)`);
  const opts = `driver=qcow2,file.driver=file,file.filename=${optionValue(file)},file.locking=off`;
  return dirtyRanges(['--', '[', 'qemu-nbd', '--read-only', '--image-opts', '--bitmap', bitmap, opts, ']'], `qemu:dirty-bitmap:${bitmap}`);
}

/** The persistent bitmaps of a qcow2 file, by name (`inUse`: written by a QEMU that did not close the file;
 *  `enabled`: marks writes, qcow2's `auto` flag). */
export async function bitmapsOf(file: string): Promise<{ name: string; inUse: boolean; enabled: boolean }[]> {
  const info = JSON.parse(await tool('qemu-img', ['info', '-U', '--output=json', '-f', 'qcow2', file], 'qemu-utils')) as { 'format-specific'?: { data?: { bitmaps?: { name: string; flags?: string[] }[] } } };
  return (info['format-specific']?.data?.bitmaps ?? []).map((b) => ({ name: b.name, inUse: (b.flags ?? []).includes('in-use'), enabled: (b.flags ?? []).includes('auto') }));
}

/** Adds an enabled persistent bitmap to a qcow2 file: every later write by any QEMU that opens it is marked. */
export async function addBitmap(file: string, bitmap: string): Promise<void> {
  await tool('qemu-img', ['bitmap', '-f', 'qcow2', '--add', '--enable', file, bitmap], 'qemu-utils');
}

/** Adds a disabled persistent bitmap that marks nothing (the coarsest granularity: a few bytes): a name in the file. */
export async function addMarker(file: string, bitmap: string): Promise<void> {
  await tool('qemu-img', ['bitmap', '-f', 'qcow2', '--add', '--disable', '-g', String(2 ** 31), file, bitmap], 'qemu-utils');
}

export async function removeBitmap(file: string, bitmap: string): Promise<void> {
  await tool('qemu-img', ['bitmap', '-f', 'qcow2', '--remove', file, bitmap], 'qemu-utils');
}
