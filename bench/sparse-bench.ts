/**
 * `npm run bench:sparse` (part of `npm run bench`): a 20 GiB sparse raw disk holding 100 MiB, backed up by vmdedup,
 * restic and borg in the same run: time, bytes vmdedup read (issue "Real hypervisor hosts": about 100 MiB), stored.
 * BENCH_DIR (default bench/.work) keeps the disk between runs.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { du, timed } from './timing';

const run = promisify(execFile);
const root = path.resolve(process.env.BENCH_DIR ?? 'bench/.work');
const dir = path.join(root, 'sparse');
const fleet = path.join(dir, 'fleet');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Deterministic bytes that compress about as well as real data does (half random, half zeros). */
function dataOf(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0, n = 0; at < length; n++, at += 64) createHash('sha256').update(`${seed}:${n}`).digest().copy(out, at);
  return out;
}

async function ensureDisk(): Promise<void> {
  if (await fs.access(path.join(dir, '.complete')).then(() => true, () => false)) return;
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(path.join(fleet, 'images'), { recursive: true });
  const handle = await fs.open(path.join(fleet, 'images/data.raw'), 'w');
  try {
    await handle.truncate(20 * GiB);
    for (let i = 0; i < 5; i++) await handle.write(dataOf(`x${i}`, 20 * MiB), 0, 20 * MiB, i * 4 * GiB + (i % 2) * 12345);
  } finally {
    await handle.close();
  }
  await fs.writeFile(path.join(fleet, 'vm.xml'), `<domain type='kvm'><name>vm</name><uuid>7d1c2a3e-0000-4000-8000-0000000000aa</uuid><devices>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='images/data.raw'/><target dev='vda'/></disk></devices></domain>\n`);
  await fs.writeFile(path.join(dir, '.complete'), '');
}

async function main(): Promise<void> {
  await ensureDisk();
  const home = path.join(dir, 'vmdedup-home');
  const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } }).catch(() => undefined);
  await fs.rm(home, { recursive: true, force: true });
  await timed(process.execPath, ['bin/vmdedup.mjs', 'source', 'add', 'sparse', '--type', 'libvirt', '--path', fleet], env);
  const ours = await timed(process.execPath, ['bin/vmdedup.mjs', 'backup', '--json'], env);
  const read = (JSON.parse(ours.stdout) as { totals: { bytesRead: number } }).totals.bytesRead;
  const oursStored = await du(path.join(home, 'repository'));
  await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } });

  const resticRepo = path.join(dir, 'restic-repo');
  await fs.rm(resticRepo, { recursive: true, force: true });
  const renv = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: resticRepo, RESTIC_CACHE_DIR: path.join(dir, 'restic-cache') };
  await timed('restic', ['init', '--repository-version', '2'], renv);
  const restic = await timed('restic', ['backup', '--quiet', fleet], renv);
  const borgRepo = path.join(dir, 'borg-repo');
  await fs.rm(borgRepo, { recursive: true, force: true });
  const benv = { BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_BASE_DIR: path.join(dir, 'borg-base') };
  await timed('borg', ['init', '--encryption', 'none', borgRepo], benv);
  const borg = await timed('borg', ['create', '--sparse', '--compression', 'zstd,1', `${borgRepo}::a`, fleet], benv);

  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
  console.log('\nSparse disk benchmark — a 20 GiB raw disk holding 100 MiB (5 extents, 2 unaligned)');
  console.log(`vmdedup  ${ours.seconds.toFixed(2).padStart(6)} s, read ${(read / MiB).toFixed(1)} MiB, stored ${mb(oursStored)}`);
  console.log(`restic   ${restic.seconds.toFixed(2).padStart(6)} s, stored ${mb(await du(resticRepo))}`);
  console.log(`borg     ${borg.seconds.toFixed(2).padStart(6)} s, stored ${mb(await du(borgRepo))}`);
  console.log(`vmdedup: ${(restic.seconds / ours.seconds).toFixed(1)}x restic's speed, ${(borg.seconds / ours.seconds).toFixed(1)}x borg's`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
