/**
 * Builds a fleet of VMs that share disks, with real image formats made by qemu-img: a libvirt folder
 * (qcow2 bases with linked clones, one shared configuration disk attached to every VM, private raw data
 * disks) and a VMware datastore (.vmx files, a monolithicSparse base with linked-clone children, a
 * monolithicFlat multi-writer disk shared by the cluster). Used by `npm start` (demo), the tests and the benchmark.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { descriptorBytes } from '../engine/formats/vmdk';

const run = promisify(execFile);
const MiB = 1024 * 1024;

export type FleetOptions = {
  dir: string;
  /** libvirt: number of qcow2 base images, and linked clones per base. */
  bases?: number;
  clonesPerBase?: number;
  baseMiB?: number;
  /** Bytes each clone writes over its base. */
  cloneDeltaMiB?: number;
  configDiskMiB?: number;
  privateDiskMiB?: number;
  /** VMware: VMs cloned from one sparse base, sharing one multi-writer flat disk. 0 for none. */
  vmwareVms?: number;
  vmwareBaseMiB?: number;
  seed?: number;
};

export type Fleet = { libvirtDir: string; vmwareDir?: string; libvirtVms: string[]; vmwareVms: string[] };

export async function buildFleet(options: FleetOptions): Promise<Fleet> {
  const o = { bases: 1, clonesPerBase: 3, baseMiB: 16, cloneDeltaMiB: 1, configDiskMiB: 2, privateDiskMiB: 4, vmwareVms: 2, vmwareBaseMiB: 8, seed: 1, ...options };
  const libvirtDir = path.join(o.dir, 'libvirt');
  const images = path.join(libvirtDir, 'images');
  await fs.mkdir(images, { recursive: true });
  const scratch = path.join(o.dir, '.scratch');
  await fs.mkdir(scratch, { recursive: true });

  await writeData(path.join(images, 'site-config.raw'), o.configDiskMiB * MiB, o.seed * 7919);
  const libvirtVms: string[] = [];
  for (let b = 0; b < o.bases; b++) {
    const baseRaw = path.join(scratch, `base${b}.raw`);
    await writeData(baseRaw, o.baseMiB * MiB, o.seed * 31 + b);
    const baseName = `base-${b + 1}.qcow2`;
    await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', baseRaw, path.join(images, baseName));
    for (let c = 0; c < o.clonesPerBase; c++) {
      const name = `vm${String(libvirtVms.length + 1).padStart(2, '0')}`;
      // A linked clone, then the clone's own writes through qemu-io (only those clusters land in the overlay).
      const clone = path.join(images, `${name}.qcow2`);
      await qemuImg('create', '-q', '-f', 'qcow2', '-b', baseName, '-F', 'qcow2', clone);
      const delta = path.join(scratch, `${name}.delta`);
      await writeData(delta, o.cloneDeltaMiB * MiB, o.seed * 1000 + libvirtVms.length);
      const at = ((c * 2 + 1) * MiB) % Math.max(MiB, (o.baseMiB - o.cloneDeltaMiB) * MiB);
      await tool('qemu-io', '-f', 'qcow2', '-c', `write -s ${delta} ${at} ${o.cloneDeltaMiB * MiB}`, clone);
      await fs.rm(delta);
      await writeData(path.join(images, `${name}-data.raw`), o.privateDiskMiB * MiB, o.seed * 5003 + libvirtVms.length);
      await fs.writeFile(path.join(libvirtDir, `${name}.xml`), libvirtDomain(name, libvirtVms.length + 1));
      libvirtVms.push(name);
    }
    await fs.rm(baseRaw);
  }

  const vmwareVms: string[] = [];
  let vmwareDir: string | undefined;
  if (o.vmwareVms > 0) {
    vmwareDir = path.join(o.dir, 'vmware');
    const shared = path.join(vmwareDir, 'shared');
    await fs.mkdir(shared, { recursive: true });
    const baseRaw = path.join(scratch, 'vmware-base.raw');
    await writeData(baseRaw, o.vmwareBaseMiB * MiB, o.seed * 97);
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', baseRaw, path.join(shared, 'gold.vmdk'));
    await fs.rm(baseRaw);
    const quorumRaw = path.join(scratch, 'quorum.raw');
    await writeData(quorumRaw, 2 * MiB, o.seed * 13);
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', quorumRaw, path.join(shared, 'quorum.vmdk'));
    await fs.rm(quorumRaw);
    await addDdbUuid(path.join(shared, 'quorum.vmdk'), '60 00 c2 9a 11 22 33 44-55 66 77 88 99 aa bb cc');
    for (let v = 0; v < o.vmwareVms; v++) {
      const name = `app${v + 1}`;
      const vmDir = path.join(vmwareDir, name);
      await fs.mkdir(vmDir, { recursive: true });
      await qemuImg('create', '-q', '-f', 'vmdk', '-b', '../shared/gold.vmdk', '-F', 'vmdk', path.join(vmDir, `${name}.vmdk`));
      await fs.writeFile(path.join(vmDir, `${name}.vmx`), vmx(name, v + 1));
      vmwareVms.push(name);
    }
  }
  await fs.rm(scratch, { recursive: true, force: true });
  return { libvirtDir, vmwareDir, libvirtVms, vmwareVms };
}

/** A fleet VM's disk: a file under images/, its format, and whether every VM shares it read-only. */
export type FleetDisk = { file: string; format: 'qcow2' | 'raw'; shared?: boolean };

/** The domain XML of a fleet VM: its disks on vda, vdb, …, then an empty CD-ROM drive. */
export function libvirtDomain(name: string, index: number, disks: FleetDisk[] = [
  { file: `${name}.qcow2`, format: 'qcow2' }, { file: 'site-config.raw', format: 'raw', shared: true }, { file: `${name}-data.raw`, format: 'raw' },
]): string {
  const slots = disks.map((disk, i) => `    <disk type='file' device='disk'>
      <driver name='qemu' type='${disk.format}'/>
      <source file='images/${disk.file}'/>
      <target dev='vd${String.fromCharCode(97 + i)}' bus='virtio'/>${disk.shared ? '\n      <readonly/>\n      <shareable/>' : ''}
    </disk>
`);
  return `<domain type='kvm'>
  <name>${name}</name>
  <uuid>6f1c2a3e-0000-4000-8000-${String(index).padStart(12, '0')}</uuid>
  <memory unit='KiB'>1048576</memory>
  <devices>
${slots.join('')}    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
  </devices>
</domain>
`;
}

function vmx(name: string, index: number): string {
  const hex = index.toString(16).padStart(2, '0');
  return [
    '.encoding = "UTF-8"', 'config.version = "8"', 'virtualHW.version = "19"',
    `displayName = "${name}"`, `uuid.bios = "56 4d 00 00 00 00 00 ${hex}-00 00 00 00 00 00 00 ${hex}"`,
    'scsi0.present = "TRUE"', 'scsi0.virtualDev = "pvscsi"',
    'scsi0:0.present = "TRUE"', `scsi0:0.fileName = "${name}.vmdk"`, 'scsi0:0.mode = "persistent"',
    'scsi0:1.present = "TRUE"', 'scsi0:1.fileName = "../shared/quorum.vmdk"', 'scsi0:1.mode = "independent-persistent"', 'scsi0:1.sharing = "multi-writer"',
    'sata0.present = "TRUE"', 'sata0:0.present = "TRUE"', 'sata0:0.deviceType = "cdrom-image"', 'sata0:0.fileName = "tools.iso"',
    '',
  ].join('\n');
}

/** Adds a ddb.uuid line to a text VMDK descriptor (qemu-img does not write one). */
async function addDdbUuid(descriptor: string, uuid: string): Promise<void> {
  const text = descriptorBytes(await fs.readFile(descriptor)).toString('utf8');
  await fs.writeFile(descriptor, `${text.trimEnd()}\nddb.uuid = "${uuid}"\n`);
}

export function qemuImg(...args: string[]): Promise<void> {
  return tool('qemu-img', ...args);
}

export async function tool(command: string, ...args: string[]): Promise<void> {
  try {
    await run(command, args);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${command} is not installed (Debian/Ubuntu: apt-get install qemu-utils)`);
    throw err;
  }
}

/** Semi-compressible data (about 2:1 under zstd, like VM images), with some all-zero stretches. */
export async function writeData(file: string, size: number, seed: number): Promise<void> {
  const handle = await fs.open(file, 'w');
  try {
    for (let offset = 0; offset < size; offset += 4 * MiB) {
      const length = Math.min(4 * MiB, size - offset);
      await handle.write(pattern(length, seed + offset / MiB), 0, length, offset);
    }
  } finally {
    await handle.close();
  }
}

export async function overwrite(file: string, offset: number, length: number, seed: number): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.write(pattern(length, seed ^ 0x5bd1e995), 0, length, offset);
  } finally {
    await handle.close();
  }
}

export function pattern(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let state = (seed * 2654435761) >>> 0 || 1;
  const next = () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state;
  };
  const words = ['kernel', 'systemd', 'nginx', 'GET /index.html', 'status=200', 'user', 'postgres', 'INFO', 'WARN', 'cache'];
  for (let at = 0; at < size; at += 4096) {
    const end = Math.min(size, at + 4096);
    const kind = next() % 8;
    if (kind < 3) {
      for (let i = at; i + 4 <= end; i += 4) out.writeUInt32LE(next(), i);
    } else if (kind < 7) {
      let i = at;
      while (i < end) {
        const word = `${words[next() % words.length]} ${next() % 10000} `;
        i += out.write(word, i, end - i, 'latin1');
      }
    } // else: an all-zero page
  }
  return out;
}
