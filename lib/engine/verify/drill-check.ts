/**
 * A restore drill's checks of one restored disk: its files hold the bytes of the stored disk, block for block, and
 * `qemu-img` finds the image sound, with its backing chain inside the drill's folder.
 *
 * The restore rewrites a child's pointer to its parent (qcow2 backing file, VMDK parentFileNameHint): that changes
 * bytes of the header, which lies in the first block of the main file. So a disk with a parent may differ from its
 * stored disk there, and only there; every other block, and every block of a disk without a parent, must match.
 */
import { execFile } from 'node:child_process';
import { type ChunkIdScheme, chunkIdOf } from '../repository/chunk-id';
import { open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { isInside } from '../containment';
import type { BackupDiskEntry } from '../repository/manifests';
import type { Repository } from '../repository/repository';

const run = promisify(execFile);

/** qemu-img check's exit codes (qemu-img(1)). */
const CHECK_LEAKS_ONLY = 3;
const CHECK_CORRUPT = 2;
const CHECK_UNSUPPORTED = 63;

/** What is wrong with the restored disk (empty: sound and identical to the backup). */
export async function checkRestoredDisk(repo: Repository, options: { entry: BackupDiskEntry; files: string[]; root: string; signal?: AbortSignal }): Promise<string[]> {
  const { entry, files } = options;
  const stored = await repo.getStoredDisk(entry.digest);
  const problems: string[] = [];
  if (files.length !== stored.files.length) return [`${entry.relativePath}: ${files.length} files restored, the backup has ${stored.files.length}`];
  for (const [index, file] of files.entries()) {
    const allowed = entry.parent && index === 0 ? new Set([0]) : new Set<number>();
    problems.push(...(await compareBlocks(file, stored.files[index], stored.blockSize, repo.ids, allowed, options.signal)));
  }
  if (entry.format !== 'raw') problems.push(...(await qemuCheck(files[0], entry.format, options.root, options.signal)));
  return problems;
}

async function compareBlocks(file: string, stored: { size: number; blocks: (string | null)[] }, blockSize: number, ids: ChunkIdScheme, mayDiffer: Set<number>, signal?: AbortSignal): Promise<string[]> {
  const name = path.basename(file);
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size !== stored.size) return [`${name} is ${size} bytes, the backup's is ${stored.size}`];
    const buffer = Buffer.alloc(blockSize);
    const differing: number[] = [];
    for (let index = 0; index * blockSize < size; index++) {
      signal?.throwIfAborted();
      const length = Math.min(blockSize, size - index * blockSize);
      const { bytesRead } = await handle.read(buffer, 0, length, index * blockSize);
      if (bytesRead !== length) return [`${name}: short read at block ${index}`];
      const block = buffer.subarray(0, length);
      const id = stored.blocks[index];
      const same = id ? chunkIdOf(ids, block) === id : isZero(block);
      if (!same && !mayDiffer.has(index)) differing.push(index);
    }
    if (differing.length === 0) return [];
    return [`${name}: ${differing.length} block${differing.length === 1 ? ' differs' : 's differ'} from the backup (first: block ${differing[0]} at byte ${differing[0] * blockSize})`];
  } finally {
    await handle.close();
  }
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

export async function qemuCheck(file: string, format: 'qcow2' | 'vmdk', root: string, signal?: AbortSignal): Promise<string[]> {
  const name = path.basename(file);
  // The restored chain must resolve, and stay inside the drill's folder (a pointer left at the live parent would
  // check the live disk, not the backup). Walked link by link with `qemu-img info` (which opens no backing file)
  // before anything opens the chain: `qemu-img check` opens every file of it, and a link that led out of the folder
  // had it open another VM's live disk (locking it), or block for ever on a FIFO there.
  const chain = await chainInside(file, format, root, signal);
  if (chain.problem) return [`${name}: ${chain.problem}`];
  const problems: string[] = [];
  try {
    await run('qemu-img', ['check', '-f', format, file], { maxBuffer: 16 << 20, signal });
  } catch (err) {
    if (signal?.aborted) throw err;
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') return ['qemu-img is not installed (apt install qemu-utils): the restored disks could not be checked'];
    if (e.code === CHECK_CORRUPT) problems.push(`${name}: qemu-img check found corruption: ${firstLine(e.stdout || e.stderr)}`);
    else if (e.code !== CHECK_LEAKS_ONLY && e.code !== CHECK_UNSUPPORTED) problems.push(`${name}: qemu-img check failed: ${firstLine(e.stderr || e.stdout)}`);
  }
  return problems;
}

/** Follows the backing chain from `file` without opening any backing file: the first link that leaves `root`, or none. */
async function chainInside(file: string, format: string, root: string, signal?: AbortSignal): Promise<{ problem?: string }> {
  const inside = await realpath(root);
  let current = file;
  let currentFormat: string | undefined = format;
  for (let depth = 0; depth < 256; depth++) {
    let info: { 'full-backing-filename'?: string; 'backing-filename'?: string; 'backing-filename-format'?: string };
    try {
      const { stdout } = await run('qemu-img', ['info', '--output=json', ...(currentFormat ? ['-f', currentFormat] : []), current], { maxBuffer: 16 << 20, signal });
      info = JSON.parse(stdout);
    } catch (err) {
      if (signal?.aborted) throw err;
      if ((err as { code?: string }).code === 'ENOENT') return { problem: 'qemu-img is not installed (apt install qemu-utils): the restored disks could not be checked' };
      return { problem: `qemu-img info cannot open the restored chain at ${path.basename(current)}: ${firstLine((err as { stderr?: string }).stderr ?? (err as Error).message)}` };
    }
    const backing = info['full-backing-filename'] ?? info['backing-filename'];
    if (!backing) return {};
    // A protocol or json: pseudo-file (nbd:, http:, json:{…}) is no file of the folder.
    if (!path.isAbsolute(backing) && /^[A-Za-z][A-Za-z0-9+.-]*:/.test(backing)) return { problem: `its backing chain leaves the drill's folder: ${backing}` };
    const absolute = path.resolve(path.dirname(current), backing);
    const at = await realpath(absolute).catch(() => absolute);
    if (!isInside(inside, at) || at === inside) return { problem: `its backing chain leaves the drill's folder: ${backing}` };
    current = at;
    currentFormat = info['backing-filename-format'];
  }
  return { problem: 'its backing chain is longer than 256 images' };
}

function firstLine(text: string | undefined): string {
  return (text ?? '').trim().split('\n')[0]?.slice(0, 300) ?? '';
}
