import type { DiskFormat } from '../formats/detect';

export const SOURCE_TYPES = ['libvirt', 'vmware'] as const;
export type SourceType = (typeof SOURCE_TYPES)[number];

/** `path`: the folder of VM configs (scanned recursively). `storage`: further folders the configs' disks may live in
 *  (libvirt's standard layout keeps configs in /etc/libvirt/qemu and disks in /var/lib/libvirt/images). Nothing
 *  outside these folders is read, and no restore writes outside them. */
export type SourceSpec = {
  name: string; type: SourceType; path: string; storage?: string[];
  /** A live libvirt connection (qemu:///system): domains, state and XML come from libvirt, disks may also live in
   *  its storage pools' folders, and running domains are backed up at one point in time. `path` is then libvirt's
   *  folder of persistent domain XML for that connection. */
  uri?: string;
};

export type { DiskFormat };

/** One disk entry of a VM config, as the config states it (the "pointer" from the VM to its disk). */
export type DiskSlot = {
  /** Where the disk is attached: libvirt target dev ("vda"), VMware slot ("scsi0:1"). */
  slot: string;
  device: string; // disk, cdrom, floppy, lun…
  /** The path exactly as the config writes it (relative or absolute). */
  target?: string;
  /** Absolute path, resolved against the config's folder (not yet canonical). */
  path?: string;
  format?: DiskFormat;
  shareable: boolean;
  readonly: boolean;
  serial?: string;
  wwn?: string;
  mode?: string;
  sharing?: string;
  /** False for CD-ROMs and other devices that are listed but not backed up. */
  backedUp: boolean;
  note?: string;
};

/** A VM as read from its source config file. */
export type VmConfig = {
  name: string;
  uuid: string;
  configPath: string;
  configBytes: Buffer;
  slots: DiskSlot[];
};

/** A problem of the source, not of one VM (an ambiguous disk GUID, a folder that cannot be read): the disks
 *  concerned are still backed up, but the run reports the line and exits 2. */
export type ScanProblem = { message: string; disks: string[] };
