import fs from 'node:fs/promises';
import path from 'node:path';
import { normalizedLocation, repositoryLocation, syncStateFile, syncTargetSecret } from '../../config';
import { type SyncProgress, type SyncReport, type SyncState, syncRepository } from '../../engine/sync/sync';
import { AppError } from '../../errors';
import { catalogCall, getCatalogSql } from '../../catalog/db';
import { acquireSyncLease } from '../../catalog/sync-lease';
import type { Repository } from '../../engine/repository/repository';
import { openCopyTarget, openRepository } from '../../open-repository';
import { isInside } from '../../engine/containment';

export type SyncResult = { report: SyncReport; target: { location: string; id: string; encrypted: boolean; created: boolean; recoveryKey?: string } };

/**
 * `vmdedup sync --to <location>`: copies the backups of the catalog's repository that the copy lacks (engine/sync), one
 * sync per copy at a time (a second one, from any host of this catalog, is refused).
 * The copy is created on first use (encrypted when the source is, or with `encrypt`); what was copied is kept in a
 * cache under VMDEDUP_HOME, rebuilt from the copy when lost.
 */
export async function syncToRepository(options: { to: string; encrypt?: boolean; check?: boolean; source?: Repository; onProgress?: (progress: SyncProgress) => void; signal?: AbortSignal }): Promise<SyncResult> {
  const location = normalizedLocation(options.to);
  const own = repositoryLocation();
  if (location === own) throw new AppError('BAD_INPUT', { message: `--to ${location} is the repository itself (VMDEDUP_REPOSITORY): give another folder or bucket prefix` });
  if (isInside(own, location) || isInside(location, own)) {
    throw new AppError('BAD_INPUT', { message: `--to ${location} ${isInside(own, location) ? 'is inside' : 'holds'} the repository ${own}: a copy goes to another folder, disk or bucket prefix` });
  }
  const source = options.source ?? (await openRepository({ mustExist: true }));
  // The copy's location is held before it may be created (two syncs making one new copy would each write a config),
  // then the copy itself (its id: the same copy reached by another path or host of this catalog).
  const sql = await catalogCall(getCatalogSql);
  const releaseLocation = await catalogCall(() => acquireSyncLease(sql, `location:${location}`));
  if (!releaseLocation) throw new AppError('CONFLICT', { message: `another sync into ${location} is running; try again when it has finished` });
  let report: SyncReport;
  let copy: Omit<SyncResult['target'], 'location'>;
  try {
    const { repo: target, created, recoveryKey } = await openCopyTarget({ location, source, encrypt: Boolean(options.encrypt), secret: syncTargetSecret() });
    copy = { id: target.config.id, encrypted: target.encrypted, created, recoveryKey };
    const release = await catalogCall(() => acquireSyncLease(sql, target.config.id));
    if (!release) throw new AppError('CONFLICT', { message: `another sync into ${location} (repository ${target.config.id}) is running; try again when it has finished` });
    try {
      const stateFile = syncStateFile(source.config.id, target.config.id);
      const state = await readState(stateFile);
      // The cache remembers a copy made encrypted: one whose config.json now says plain was altered.
      if (state?.targetEncrypted && !target.encrypted) throw new AppError('REPOSITORY', { message: `${location} was an encrypted copy and its config.json now says it is not: it was altered; nothing is copied into it` });
      await target.sweepTemporaryFiles(); // what a killed sync left (no backup ever runs into a copy to sweep them)
      ({ report } = await syncRepository({
        source, target, state, check: options.check,
        onState: (next) => writeState(stateFile, { ...next, targetEncrypted: target.encrypted }),
        onProgress: options.onProgress, signal: options.signal,
      }));
    } finally {
      release();
    }
  } finally {
    releaseLocation();
  }
  return { report, target: { location, ...copy } };
}

type KeptState = SyncState & { targetEncrypted?: boolean };

async function readState(file: string): Promise<KeptState | undefined> {
  try {
    const state = JSON.parse(await fs.readFile(file, 'utf8')) as KeptState;
    return typeof state.images === 'object' && typeof state.disks === 'object' ? state : undefined;
  } catch {
    return undefined; // a cache: absent or damaged, it is rebuilt
  }
}

/** Written whole or not at all (a temp file renamed over it). */
async function writeState(file: string, state: KeptState): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(temp, JSON.stringify(state), { mode: 0o600 });
  await fs.rename(temp, file);
}
