/**
 * `npm run bench:vdi` (part of `npm run bench`): a VDI pool — BENCH_VDI_VMS (default 10,000) qcow2 linked clones on
 * two 8 MiB bases, each with 16 KiB of private data, all sharing one 1 MiB configuration disk — backed up by vmdedup,
 * restic and borg in the same run: first backup, unchanged re-backup and (vmdedup) the backup of one VM of the pool,
 * with peak memory. Targets (issue "A VDI pool"): unchanged re-backup no slower than borg's, first backup within 2x
 * restic's, one-VM backup under 1 s, peak memory under 256 MB.
 *
 * BENCH_DIR (default bench/.work) keeps the pool between runs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type Timed, du, medianOf, timed } from './timing';

const run = promisify(execFile);
const root = path.resolve(process.env.BENCH_DIR ?? 'bench/.work');
const vmCount = Number(process.env.BENCH_VDI_VMS ?? 10_000);
const poolDir = path.join(root, `vdi-${vmCount}`);
const sourceDir = path.join(poolDir, 'libvirt');
const MB = 1e6;
const BASE_MIB = 8;
const PRIVATE_BYTES = 16 * 1024;
/** The pattern a template overlay's private cluster is written with, found again to place each VM's own bytes. */
const MARK = 0x5a;
const RERUNS = 3;

const vmName = (i: number) => `vm${String(i).padStart(5, '0')}`;

/** Deterministic bytes that compress about as well as real data does (half random, half runs). */
function dataOf(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0, n = 0; at < length; n++) {
    const block = createHash('sha256').update(`${seed}:${n}`).digest();
    block.copy(out, at);
    at += 64; // 32 random bytes, then 32 zeros
  }
  return out;
}

async function ensurePool(): Promise<void> {
  const marker = path.join(poolDir, '.complete');
  if (await fs.access(marker).then(() => true, () => false)) return;
  await fs.rm(poolDir, { recursive: true, force: true });
  const images = path.join(sourceDir, 'images');
  await fs.mkdir(images, { recursive: true });
  await fs.mkdir(path.join(sourceDir, 'domains'), { recursive: true });
  process.stderr.write(`building a pool of ${vmCount} linked clones in ${poolDir} ...\n`);
  const templates: { overlay: Buffer; privateAt: number }[] = [];
  for (const base of [1, 2]) {
    const raw = path.join(poolDir, `base-${base}.raw`);
    await fs.writeFile(raw, dataOf(`base-${base}`, BASE_MIB * 2 ** 20));
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, path.join(images, `base-${base}.qcow2`)]);
    await fs.rm(raw);
    // One overlay made by qemu, with one private cluster; every clone is a copy with its own bytes there.
    const template = path.join(images, `template-${base}.qcow2`);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16384', '-b', `base-${base}.qcow2`, '-F', 'qcow2', template]);
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${MARK} ${2 ** 20} ${PRIVATE_BYTES}`, template]);
    const overlay = await fs.readFile(template);
    await fs.rm(template);
    const privateAt = overlay.indexOf(Buffer.alloc(PRIVATE_BYTES, MARK));
    if (privateAt < 0) throw new Error('the template overlay holds no private cluster');
    templates.push({ overlay, privateAt });
  }
  await fs.writeFile(path.join(images, 'site-config.raw'), dataOf('site-config', 2 ** 20));
  for (let i = 1; i <= vmCount; i++) {
    const { overlay, privateAt } = templates[i % 2];
    const clone = Buffer.from(overlay);
    dataOf(vmName(i), PRIVATE_BYTES).copy(clone, privateAt);
    await fs.writeFile(path.join(images, `${vmName(i)}.qcow2`), clone);
    await fs.writeFile(path.join(sourceDir, 'domains', `${vmName(i)}.xml`), domainXml(i));
  }
  const check = await run('qemu-img', ['check', path.join(images, `${vmName(1)}.qcow2`)]).catch((err) => err);
  if (check instanceof Error) throw new Error(`a clone fails qemu-img check: ${check.message}`);
  await fs.writeFile(marker, '');
}

function domainXml(i: number): string {
  return `<domain type='kvm'>
  <name>${vmName(i)}</name>
  <uuid>7d1c2a3e-0000-4000-8000-${String(i).padStart(12, '0')}</uuid>
  <memory unit='KiB'>2097152</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${sourceDir}/images/${vmName(i)}.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${sourceDir}/images/site-config.raw'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
      <shareable/>
    </disk>
  </devices>
</domain>
`;
}

type Result = { tool: string; first: Timed; again: Timed; oneVm?: Timed; storedBytes: number };

async function benchVmdedup(): Promise<Result> {
  const home = path.join(root, 'vdi-vmdedup-home');
  const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } }).catch(() => undefined);
  await fs.rm(home, { recursive: true, force: true });
  await fs.mkdir(home, { recursive: true });
  await timed(process.execPath, ['bin/vmdedup.mjs', 'source', 'add', 'pool', '--type', 'libvirt', '--path', sourceDir], env);
  const first = await timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--json'], env);
  const report = JSON.parse(first.stdout) as { backups: unknown[]; failures: unknown[] };
  if (report.backups.length !== vmCount) throw new Error(`vmdedup backed up ${report.backups.length} VMs, expected ${vmCount}: ${JSON.stringify(report.failures).slice(0, 300)}`);
  const again = await medianOf(RERUNS, () => timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--json'], env));
  const rebackup = JSON.parse(again.stdout) as { backups: unknown[]; totals: { bytesRead: number } };
  if (rebackup.backups.length !== vmCount || rebackup.totals.bytesRead !== 0) throw new Error('the unchanged re-backup read data or missed VMs');
  const oneVm = await medianOf(RERUNS, () => timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--vm', vmName(Math.ceil(vmCount / 2)), '--json'], env));
  const storedBytes = await du(path.join(home, 'repository'));
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } });
  return { tool: 'vmdedup', first, again, oneVm, storedBytes };
}

async function benchRestic(): Promise<Result> {
  const repo = path.join(root, 'vdi-restic-repo');
  await fs.rm(repo, { recursive: true, force: true });
  const env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: path.join(root, 'vdi-restic-cache') };
  await timed('restic', ['init', '--repository-version', '2'], env);
  const first = await timed('restic', ['backup', '--quiet', sourceDir], env);
  const again = await medianOf(RERUNS, () => timed('restic', ['backup', '--quiet', sourceDir], env));
  return { tool: 'restic', first, again, storedBytes: await du(repo) };
}

async function benchBorg(): Promise<Result> {
  const repo = path.join(root, 'vdi-borg-repo');
  await fs.rm(repo, { recursive: true, force: true });
  const env = { BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_BASE_DIR: path.join(root, 'vdi-borg-base') };
  await timed('borg', ['init', '--encryption', 'none', repo], env);
  const first = await timed('borg', ['create', '--compression', 'zstd,1', `${repo}::first`, sourceDir], env);
  let archive = 0;
  const again = await medianOf(RERUNS, () => timed('borg', ['create', '--compression', 'zstd,1', `${repo}::again-${++archive}`, sourceDir], env));
  return { tool: 'borg', first, again, storedBytes: await du(repo) };
}

async function main(): Promise<void> {
  await fs.mkdir(root, { recursive: true });
  await ensurePool();
  if (process.argv.includes('--build-only')) return;
  const logical = await du(sourceDir);
  await run('bash', ['-c', `find ${JSON.stringify(sourceDir)} -type f -exec cat {} + > /dev/null`]);
  const results: Result[] = [];
  for (const bench of [benchVmdedup, benchRestic, benchBorg]) {
    process.stderr.write(`vdi: running ${bench.name.replace('bench', '').toLowerCase()} ...\n`);
    results.push(await bench());
  }
  const [ours, restic, borg] = results;
  const mb = (bytes: number) => `${(bytes / MB).toFixed(0)} MB`;
  console.log(`\nVDI pool benchmark — ${os.cpus().length} cores, node ${process.version}`);
  console.log(`pool: ${vmCount} linked clones on 2 bases of ${BASE_MIB} MiB, one shared 1 MiB config disk; ${mb(logical)} of files (${poolDir})\n`);
  console.log(`tool      first backup          unchanged re-backup   stored     (re-backups: median of ${RERUNS}; peak RSS of each)`);
  for (const r of results) {
    console.log(`${r.tool.padEnd(9)} ${r.first.seconds.toFixed(2).padStart(7)} s ${mb(r.first.peakRssBytes).padStart(7)}   ${r.again.seconds.toFixed(2).padStart(7)} s ${mb(r.again.peakRssBytes).padStart(7)}   ${mb(r.storedBytes).padStart(7)}`);
  }
  const peak = Math.max(ours.first.peakRssBytes, ours.again.peakRssBytes, ours.oneVm!.peakRssBytes);
  console.log('');
  console.log(`first backup: ${(ours.first.seconds / restic.first.seconds).toFixed(2)}x restic's time (target <= 2), ${(ours.first.seconds / borg.first.seconds).toFixed(2)}x borg's`);
  console.log(`unchanged re-backup: ${(ours.again.seconds / borg.again.seconds).toFixed(2)}x borg's time (target <= 1), ${(ours.again.seconds / restic.again.seconds).toFixed(2)}x restic's`);
  console.log(`one-VM backup (--vm ${vmName(Math.ceil(vmCount / 2))}): ${ours.oneVm!.seconds.toFixed(2)} s (target < 1 s)`);
  console.log(`vmdedup peak memory: ${mb(peak)} (target < 256 MB)`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
