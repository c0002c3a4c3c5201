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
