/**
 * `npm run bench:libvirt` (part of `npm run bench` when libvirtd answers): a running TCG guest whose 512 MiB qcow2
 * disk holds 256 MiB of its own data and takes the test guest's writes (64 KiB blocks, a few a second), backed up in
 * full and then incrementally by vmdedup and by virtnbdbackup (libvirt's backup API, the same checkpoints) in the
 * same run, one tool after the other: time, bytes vmdedup read, bytes each stored. Needs root, libvirt, QEMU and virtnbdbackup (Debian
 * packages); the guest is made by scripts/libvirt-host.sh in BENCH_DIR (default bench/.work).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { du, timed } from './timing';

const run = promisify(execFile);
const root = path.resolve(process.env.BENCH_DIR ?? 'bench/.work');
const dir = path.join(root, 'libvirt');
const MiB = 1024 ** 2;
const URI = 'qemu:///system';
const name = 'vmdedup-bench';
const virsh = (...args: string[]) => run('virsh', ['-q', '-c', URI, ...args]).then((r) => r.stdout);

function dataOf(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0, n = 0; at < length; n++, at += 64) createHash('sha256').update(`${seed}:${n}`).digest().copy(out, at);
  return out;
}

async function main(): Promise<void> {
  if (!(await run('virtnbdbackup', ['--version']).then(() => true, () => false))) {
    console.log('\nlibvirt benchmark skipped: virtnbdbackup is not installed (Debian: apt-get install virtnbdbackup)');
    return;
  }
  const guest = path.join(root, 'libvirt-guest');
  await run('bash', ['scripts/libvirt-host.sh', 'setup', guest]);
  await virsh('destroy', name).catch(() => undefined);
  await virsh('undefine', name, '--checkpoints-metadata').catch(() => undefined);
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(path.join(dir, 'img'), { recursive: true });
  await fs.chmod(dir, 0o755);
  const seed = path.join(dir, 'seed.raw');
  const handle = await fs.open(seed, 'w');
  await handle.truncate(512 * MiB);
  for (let i = 0; i < 16; i++) await handle.write(dataOf(`d${i}`, 16 * MiB), 0, 16 * MiB, 256 * MiB + i * 16 * MiB);
  await handle.close();
  const disk = path.join(dir, 'img', `${name}.qcow2`);
  await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', seed, disk]);
  await fs.rm(seed);
  const xml = path.join(dir, 'domain.xml');
  await fs.writeFile(xml, `<domain type='qemu'><name>${name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>${guest}/vmlinuz</kernel><initrd>${guest}/initrd.img</initrd><cmdline>console=ttyS0 panic=-1 quiet</cmdline></os>
<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disk}'/><target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='${dir}/console'/><target port='0'/></serial><video><model type='none'/></video><memballoon model='none'/></devices></domain>\n`);
  await virsh('define', xml);
  try {
    await virsh('start', name);
    for (let i = 0; i < 600 && !(await fs.readFile(path.join(dir, 'console'), 'utf8').catch(() => '')).includes('wrote seq=0'); i++) await new Promise((r) => setTimeout(r, 100));
    const home = path.join(dir, 'vmdedup-home');
    const env = { VMDEDUP_HOME: home, DATABASE_URL: '' };
    const cli = (...args: string[]) => timed(process.execPath, ['bin/vmdedup.mjs', ...args], env);
    await cli('source', 'add', 'host', '--type', 'libvirt', '--uri', URI, '--storage', path.join(dir, 'img'));
    const readOf = (out: string) => (JSON.parse(out) as { backups: { disks: { path: string; bytesRead: number }[] }[] }).backups[0].disks.find((d) => d.path === disk)!.bytesRead;
    const out = path.join(dir, 'virtnbdbackup');
    const peer = (level: string) => timed('virtnbdbackup', ['-U', URI, '-d', name, '-l', level, '-o', out]);

    // One after the other on the same guest (virtnbdbackup refuses a domain with checkpoints it did not take):
    // each tool's full backup, 5 s of guest writes, its incremental.
    const peerFull = await peer('full');
    const peerFullStored = await du(out);
    await new Promise((r) => setTimeout(r, 5000));
    const peerInc = await peer('inc');
    const peerIncStored = (await du(out)) - peerFullStored;
    for (const checkpoint of (await virsh('checkpoint-list', '--domain', name, '--name')).split('\n').filter(Boolean).sort()) {
      await virsh('checkpoint-delete', '--domain', name, '--checkpointname', checkpoint);
    }
    const oursFull = await cli('backup', '--vm', name, '--json');
    const oursFullStored = await du(path.join(home, 'repository'));
    await new Promise((r) => setTimeout(r, 5000));
    const oursInc = await cli('backup', '--vm', name, '--json');
    const oursIncStored = (await du(path.join(home, 'repository'))) - oursFullStored;
    await run(process.execPath, ['bin/vmdedup.mjs', 'db', 'stop'], { env: { ...process.env, ...env } }).catch(() => undefined);

    const mb = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
    console.log(`\nRunning-VM benchmark — a TCG guest writing 64 KiB blocks; its qcow2 disk ${mb((await fs.stat(disk)).size)} (256 MiB of data + the guest's)`);
    console.log(`full         vmdedup ${oursFull.seconds.toFixed(2)} s, read ${mb(readOf(oursFull.stdout))}, stored ${mb(oursFullStored)} | virtnbdbackup ${peerFull.seconds.toFixed(2)} s, stored ${mb(peerFullStored)}`);
    console.log(`incremental  vmdedup ${oursInc.seconds.toFixed(2)} s, read ${mb(readOf(oursInc.stdout))}, stored ${mb(oursIncStored)} | virtnbdbackup ${peerInc.seconds.toFixed(2)} s, stored ${mb(peerIncStored)}`);
    console.log(`vmdedup: full ${(peerFull.seconds / oursFull.seconds).toFixed(2)}x virtnbdbackup's speed, incremental ${(peerInc.seconds / oursInc.seconds).toFixed(2)}x`);
  } finally {
    await virsh('destroy', name).catch(() => undefined);
    await virsh('undefine', name, '--checkpoints-metadata').catch(() => undefined);
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
