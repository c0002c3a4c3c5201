import type pg from 'pg';

/**
 * Empties the index of the repository (backup images, stored disks, and the VMs and disks they and the
 * scans recorded); sources, users, jobs, restore requests and the audit trail stay. DELETE, not TRUNCATE:
 * readers keep seeing the old rows until the caller's transaction commits.
 */
export async function clearIndex(client: pg.PoolClient): Promise<void> {
  // The next scan of each source records it in full (its shortcut "nothing changed since" no longer holds).
  // Source rows first, like a scan's own statement (Source, then Vm): the same order, no deadlock.
  await client.query('UPDATE "Source" SET "inventoryDigest" = NULL WHERE "inventoryDigest" IS NOT NULL');
  await forgetBackups(client);
  for (const table of ['VmDisk', 'Disk', 'Vm']) await client.query(`DELETE FROM "${table}"`);
}

/** Forgets every backup record (images and their work, disk sets, which blobs are recorded, stored disks, fast-path versions); the scanned VMs and disks stay. */
export async function forgetBackups(client: pg.PoolClient): Promise<void> {
  for (const table of ['RecordedImageBlob', 'BackupImage', 'DiskSet', 'DiskVersion', 'StoredDisk']) await client.query(`DELETE FROM "${table}"`);
}
