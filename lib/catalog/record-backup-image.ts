import type { Catalog } from '../db';
import type { BackupImageManifest } from '../engine/repository/manifests';

/**
 * Indexes one backup image (as written to the repository) in the catalog, in one transaction: the VM, its
 * disks and their common flag, the VMs sharing each disk, the stored disks and the fast-path versions.
 * `catalog rebuild` replays every image through this same function.
 */
export async function recordBackupImage(db: Catalog, options: { sourceId: string; image: BackupImageManifest }): Promise<void> {
  const { sourceId, image } = options;
  await db.$transaction(async (tx) => {
    const vm = await tx.vm.upsert({
      where: { sourceId_name: { sourceId, name: image.vm.name } },
      create: { sourceId, name: image.vm.name, uuid: image.vm.uuid, configPath: image.vm.configPath },
      update: { uuid: image.vm.uuid, configPath: image.vm.configPath },
    });
    // This VM's own backup says exactly which disks it uses now.
    await tx.vmDisk.deleteMany({ where: { vmId: vm.id } });
    await tx.backupImage.create({
      data: {
        id: image.id, vmId: vm.id, createdAt: new Date(image.createdAt),
        logicalBytes: image.totals.logicalBytes, bytesRead: image.totals.bytesRead,
        bytesWritten: image.totals.bytesWritten, bytesReferenced: image.totals.bytesReferenced,
      },
    });
    for (const entry of image.disks) {
      const disk = await tx.disk.upsert({
        where: { sourceId_identifier: { sourceId, identifier: entry.identifier } },
        create: { sourceId, identifier: entry.identifier, path: entry.path, format: entry.format, common: entry.common },
        update: { path: entry.path, format: entry.format, common: entry.common },
      });
      await tx.storedDisk.upsert({
        where: { digest: entry.digest },
        create: {
          digest: entry.digest, format: entry.format, logicalBytes: entry.logicalBytes,
          storedBytes: entry.action === 'stored' ? entry.bytesWritten : 0, createdAt: new Date(image.createdAt),
        },
        update: entry.action === 'stored' ? { storedBytes: entry.bytesWritten } : {},
      });
      await tx.diskVersion.upsert({
        where: { diskId_versionToken: { diskId: disk.id, versionToken: entry.versionToken } },
        create: { diskId: disk.id, versionToken: entry.versionToken, digest: entry.digest },
        update: { digest: entry.digest },
      });
      await tx.vmDisk.create({ data: { vmId: vm.id, diskId: disk.id, via: entry.via, slot: entry.slot ?? null } });
      // The other VMs that share the disk, as the source showed them at backup time.
      for (const name of entry.usedBy) {
        if (name === image.vm.name) continue;
        const other = await tx.vm.upsert({
          where: { sourceId_name: { sourceId, name } },
          create: { sourceId, name, configPath: '' },
          update: {},
        });
        await tx.vmDisk.upsert({
          where: { vmId_diskId: { vmId: other.id, diskId: disk.id } },
          create: { vmId: other.id, diskId: disk.id, via: 'shared' },
          update: {},
        });
      }
      await tx.diskReference.create({
        data: {
          backupImageId: image.id, diskId: disk.id, digest: entry.digest, via: entry.via,
          slot: entry.slot ?? null, target: entry.target ?? null, path: entry.path, versionToken: entry.versionToken,
          parentPointer: entry.parent?.pointer ?? null, parentPath: entry.parent?.path ?? null,
          parentVersion: entry.parent?.versionToken ?? null, common: entry.common, action: entry.action,
          logicalBytes: entry.logicalBytes, bytesRead: entry.bytesRead, bytesWritten: entry.bytesWritten,
        },
      });
    }
  }, { timeout: 60_000 });
}

/** The fast path's question: is this disk, at this version, already stored? */
export async function findStoredVersion(db: Catalog, options: { sourceId: string; identifier: string; versionToken: string }): Promise<string | undefined> {
  const version = await db.diskVersion.findFirst({
    where: { versionToken: options.versionToken, disk: { sourceId: options.sourceId, identifier: options.identifier } },
    select: { digest: true },
  });
  return version?.digest;
}
