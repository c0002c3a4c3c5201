/**
 * `npm run bench:dedup-options`: how much each way of cutting disk images into chunks would store of a fleet (the
 * performance issue's first question), without changing the repository. For every image file of the fleet:
 * - fixed:      1 MiB blocks at file offsets (what the repository does today);
 * - guest:      qcow2 read in guest order — the file's own data clusters (qemu-img map, depth 0) cut into 1 MiB
 *               windows at guest offsets, the rest of the file (header, tables) in 1 MiB blocks; raw files as fixed;
 * - cdc:        content-defined chunks over the file's bytes (gear hash, 256 KiB min, ~1 MiB average, 4 MiB max);
 * - guest+cdc:  content-defined chunks over the guest-order data of qcow2 files (and over raw files), the rest of
 *               each qcow2 file in 1 MiB blocks.
 * Prints unique bytes (all-zero chunks not counted), chunk count and the seconds each took (one core, in this
 * process: relative cost only). BENCH_DIR and BENCH_SCALE as for `npm run bench`; the host fleet by default.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildHostFleet } from './host-fleet';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const root = path.resolve(process.env.BENCH_DIR ?? 'bench/.work');
const scale = Number(process.env.BENCH_SCALE ?? 1);

type Extent = { start: number; length: number; depth: number; data: boolean; zero: boolean; offset?: number };

/** A set of chunks: unique bytes by content digest. */
class ChunkSet {
  private readonly seen = new Set<string>();
  unique = 0;
  chunks = 0;
  add(bytes: Buffer, layout = ''): void {
    this.chunks++;
    if (bytes.every((b) => b === 0)) return;
    const id = createHash('sha256').update(layout).update(bytes).digest('hex');
    if (this.seen.has(id)) return;
    this.seen.add(id);
    this.unique += bytes.length;
  }
}

/** Content-defined cut points over a stream fed piece by piece (gear hash). */
class Cdc {
  private static readonly gear = (() => {
    const table = new Uint32Array(256);
    let state = 0x9e3779b9;
    for (let i = 0; i < 256; i++) {
      state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
      table[i] = state;
    }
    return table;
  })();
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private hash = 0;
  constructor(private readonly out: ChunkSet, private readonly min = 256 * 1024, private readonly max = 4 * MiB, private readonly mask = MiB - 1) {}
  feed(bytes: Buffer): void {
    let from = 0;
    for (let i = 0; i < bytes.length; i++) {
      this.hash = ((this.hash << 1) + Cdc.gear[bytes[i]]) >>> 0;
      const size = this.pendingBytes + (i + 1 - from);
      if ((size >= this.min && (this.hash & this.mask) === 0) || size >= this.max) {
        this.pending.push(bytes.subarray(from, i + 1));
        this.cut();
        from = i + 1;
      }
    }
    if (from < bytes.length) {
      this.pending.push(Buffer.from(bytes.subarray(from)));
      this.pendingBytes += bytes.length - from;
    }
  }
  end(): void {
    if (this.pendingBytes > 0 || this.pending.length) this.cut();
  }
  private cut(): void {
    this.out.add(Buffer.concat(this.pending));
    this.pending = [];
    this.pendingBytes = 0;
    this.hash = 0;
  }
}

async function readRange(handle: fs.FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buffer.subarray(0, done);
}

async function fixed(file: string, out: ChunkSet): Promise<void> {
  const handle = await fs.open(file, 'r');
  const size = (await handle.stat()).size;
  for (let at = 0; at < size; at += MiB) out.add(await readRange(handle, at, Math.min(MiB, size - at)));
  await handle.close();
}

async function cdcOfFile(file: string, out: ChunkSet): Promise<void> {
  const handle = await fs.open(file, 'r');
  const size = (await handle.stat()).size;
  const cdc = new Cdc(out);
  for (let at = 0; at < size; at += 4 * MiB) cdc.feed(await readRange(handle, at, Math.min(4 * MiB, size - at)));
  cdc.end();
  await handle.close();
}

/** The qcow2 file's own data clusters in guest order ([guest, host, length]), and the host ranges they leave. */
async function guestLayout(file: string): Promise<{ data: [number, number, number][]; rest: [number, number][] }> {
  const { stdout } = await run('qemu-img', ['map', '--output=json', '-f', 'qcow2', file], { maxBuffer: 1 << 30 });
  const data = (JSON.parse(stdout) as Extent[]).filter((e) => e.depth === 0 && e.data && e.offset !== undefined).map((e) => [e.start, e.offset!, e.length] as [number, number, number]);
  const size = (await fs.stat(file)).size;
  const used = data.map(([, host, length]) => [host, host + length]).sort((a, b) => a[0] - b[0]);
  const rest: [number, number][] = [];
  let at = 0;
  for (const [start, end] of used) {
    if (start > at) rest.push([at, start]);
    at = Math.max(at, end);
  }
  if (at < size) rest.push([at, size]);
  return { data, rest };
}

async function guest(file: string, out: ChunkSet, cdc: boolean): Promise<void> {
  if (!file.endsWith('.qcow2')) return cdc ? cdcOfFile(file, out) : fixed(file, out);
  const { data, rest } = await guestLayout(file);
  const handle = await fs.open(file, 'r');
  const stream = cdc ? new Cdc(out) : undefined;
  // Guest-order data: 1 MiB windows at guest offsets (the pieces' places in the window are part of the chunk).
  let window = -1;
  let pieces: Buffer[] = [];
  let places: [number, number][] = [];
  const flush = () => {
    // The pieces' places, adjacent ones merged: a whole window has none (the same chunk as a raw file's block).
    const merged: [number, number][] = [];
    for (const [start, end] of places) {
      const last = merged[merged.length - 1];
      if (last && last[1] === start) last[1] = end;
      else merged.push([start, end]);
    }
    const whole = merged.length === 1 && merged[0][0] === 0 && merged[0][1] === MiB;
    if (pieces.length) out.add(Buffer.concat(pieces), whole ? '' : merged.map(([a, b]) => `${a}-${b};`).join(''));
    pieces = [];
    places = [];
  };
  for (const [guestStart, host, length] of data) {
    for (let done = 0; done < length;) {
      const g = guestStart + done;
      const piece = Math.min(length - done, MiB - (g % MiB));
      const bytes = await readRange(handle, host + done, piece);
      if (stream) stream.feed(bytes);
      else {
        if (Math.floor(g / MiB) !== window) {
          flush();
          window = Math.floor(g / MiB);
        }
        pieces.push(bytes);
        places.push([g % MiB, (g % MiB) + piece]);
      }
      done += piece;
    }
  }
  flush();
  stream?.end();
  for (const [start, end] of rest) for (let at = start; at < end; at += MiB) out.add(await readRange(handle, at, Math.min(MiB, end - at)));
  await handle.close();
}

async function main(): Promise<void> {
  const dir = path.join(root, `hosts-x${scale}`);
  const marker = path.join(dir, '.complete.json');
  if (!(await fs.access(marker).then(() => true, () => false))) {
    await fs.rm(dir, { recursive: true, force: true });
    process.stderr.write(`building the host fleet in ${dir} ...\n`);
    const built = await buildHostFleet(dir, scale);
    await fs.writeFile(marker, JSON.stringify({ libvirtDir: built.libvirtDir, vms: built.vms.length, restoreVm: built.restoreVm, restoreFiles: built.restoreFiles, changedFiles: built.changedFiles }));
  }
  const images = path.join(dir, 'libvirt', 'images');
  const files = (await fs.readdir(images)).sort().map((name) => path.join(images, name));
  let logical = 0;
  for (const file of files) logical += (await fs.stat(file)).size;
  console.log(`dedup options over the host fleet (${files.length} image files, ${(logical / 1e9).toFixed(2)} GB; unique bytes before compression)`);
  const options: [string, (file: string, out: ChunkSet) => Promise<void>][] = [
    ['fixed', fixed], ['guest', (f, o) => guest(f, o, false)], ['cdc', cdcOfFile], ['guest+cdc', (f, o) => guest(f, o, true)],
  ];
  let baseline = 0;
  for (const [name, cut] of options) {
    const out = new ChunkSet();
    const started = performance.now();
    for (const file of files) await cut(file, out);
    const seconds = (performance.now() - started) / 1000;
    baseline ||= out.unique;
    console.log(`${name.padEnd(10)} ${(out.unique / 1e6).toFixed(0).padStart(6)} MB unique (${(out.unique / baseline).toFixed(3)}x fixed), ${out.chunks} chunks, ${seconds.toFixed(1)} s`);
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
