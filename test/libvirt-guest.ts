/**
 * What the libvirt tests share: the connection, virsh, and the point-in-time check of the test guest's writes
 * (scripts/libvirt-host.sh makes the guest; VMDEDUP_TEST_LIBVIRT names its folder, unset: the tests are skipped).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const guestFiles = process.env.VMDEDUP_TEST_LIBVIRT;
export const URI = 'qemu:///system';
const SLOT = 65536;
const SLOTS = 4096;

export async function virsh(...args: string[]): Promise<string> {
  return (await run('virsh', ['-q', '-c', URI, ...args])).stdout;
}

/** The guest's writes as a raw image holds them: for its highest sequence number N, every slot must hold the last
 *  block ≤ N written there (or none): a backup taken at one point in time. Returns N and the slots that disagree. */
export async function sequenceCheck(raw: string): Promise<{ highest: number; wrong: number[] }> {
  const handle = await fs.open(raw, 'r');
  const found: (number | undefined)[] = [];
  try {
    const header = Buffer.alloc(40);
    for (let slot = 0; slot < SLOTS; slot++) {
      await handle.read(header, 0, header.length, slot * SLOT);
      const match = /^SEQ (\d+) SLOT (\d+)\n/.exec(header.toString('latin1'));
      found[slot] = match && Number(match[2]) === slot ? Number(match[1]) : undefined;
    }
  } finally {
    await handle.close();
  }
  const highest = Math.max(-1, ...found.filter((n): n is number => n !== undefined));
  const expected: (number | undefined)[] = new Array(SLOTS).fill(undefined);
  for (let i = 0; i <= highest; i++) expected[(i * 97) % SLOTS] = i;
  return { highest, wrong: found.flatMap((n, slot) => (n === expected[slot] ? [] : [slot])) };
}

/** qemu-img check of a running domain's disk, paused meanwhile: QEMU flushes its metadata on pause (checked while it
 *  runs, clusters it allocated or freed but has not yet accounted on disk show as leaked). */
export async function checkRunningDisk(domain: string, file: string): Promise<void> {
  await virsh('suspend', domain);
  try {
    await run('qemu-img', ['check', '-q', '-U', file]);
  } finally {
    await virsh('resume', domain);
  }
}

/** The test guest's domain XML (TCG; `boots`: the guest kernel that writes sequence blocks, else no OS). */
export function domainXml(name: string, dir: string, disks: { dev: string; file: string; format: string }[], boots: boolean): string {
  const os = boots
    ? `<os><type arch='x86_64' machine='pc'>hvm</type><kernel>${guestFiles}/vmlinuz</kernel><initrd>${guestFiles}/initrd.img</initrd><cmdline>console=ttyS0 panic=-1 quiet</cmdline></os>`
    : `<os><type arch='x86_64' machine='pc'>hvm</type></os>`;
  return `<domain type='qemu'><name>${name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>${os}
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
${disks.map((d) => `    <disk type='file' device='disk'><driver name='qemu' type='${d.format}'/><source file='${d.file}'/><target dev='${d.dev}' bus='virtio'/></disk>`).join('\n')}
    <serial type='file'><source path='${dir}/${name}.console'/><target port='0'/></serial>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices></domain>\n`;
}

/** Starts a defined test guest and waits until its writer has begun (its console says so). */
export async function startGuest(name: string, consoleFile: string): Promise<void> {
  await virsh('start', name);
  for (let i = 0; i < 600 && !(await fs.readFile(consoleFile, 'utf8').catch(() => '')).includes('wrote seq=0'); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await fs.readFile(consoleFile, 'utf8').catch(() => '')).includes('wrote seq=0')) throw new Error(`guest ${name} did not start writing`);
}
