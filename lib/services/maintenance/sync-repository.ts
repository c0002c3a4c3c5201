import fs from 'node:fs/promises';
import path from 'node:path';
import { normalizedLocation, repositoryLocation, syncStateFile, syncTargetSecret } from '../../config';
import { type SyncProgress, type SyncReport, type SyncState, syncRepository } from '../../engine/sync/sync';
import { AppError } from '../../errors';
import { catalogCall, getCatalogSql } from '../../catalog/db';
import { acquireSyncLease } from '../../catalog/sync-lease';
import type { Repository } from '../../engine/repository/repository';
import { openCopyTarget, openRepository } from '../../open-repository';

export type SyncResult = { report: SyncReport; target: { location: string; id: string; encrypted: boolean; created: boolean; recoveryKey?: string } };

/**
 * `vmdedup sync --to <location>`: copies the backups of the catalog's repository that the copy lacks (engine/sync), one
 * sync per copy at a time (a second one, from any host of this catalog, is refused).
 * The copy is created on first use (encrypted when the source is, or with `encrypt`); what was copied is kept in a
 * cache under VMDEDUP_HOME, rebuilt from the copy when lost.
 */
export async function syncToRepository(options: { to: string; encrypt?: boolean; source?: Repository; onProgress?: (progress: SyncProgress) => void; signal?: AbortSignal }): Promise<SyncResult> {
  const location = normalizedLocation(options.to);
  if (location === repositoryLocation()) throw new AppError('BAD_INPUT', { message: `--to ${location} is the repository itself (VMDEDUP_REPOSITORY): give another folder or bucket prefix` });
  const source = options.source ?? (await openRepository({ mustExist: true }));
  const { repo: target, created, recoveryKey } = await openCopyTarget({ location, source, encrypt: Boolean(options.encrypt), secret: syncTargetSecret() });
  const stateFile = syncStateFile(source.config.id, target.config.id);
  const release = await catalogCall(async () => acquireSyncLease(await getCatalogSql(), target.config.id));
  if (!release) throw new AppError('CONFLICT', { message: `another sync into ${location} (repository ${target.config.id}) is running; try again when it has finished` });
  let report: SyncReport;
  try {
    ({ report } = await syncRepository({
      source, target, state: await readState(stateFile), onState: (state) => writeState(stateFile, state),
      onProgress: options.onProgress, signal: options.signal,
    }));
  } finally {
    release();
  }
  return { report, target: { location, id: target.config.id, encrypted: target.encrypted, created, recoveryKey } };
}

async function readState(file: string): Promise<SyncState | undefined> {
  try {
    const state = JSON.parse(await fs.readFile(file, 'utf8')) as SyncState;
    return typeof state.images === 'object' && typeof state.disks === 'object' ? state : undefined;
  } catch {
    return undefined; // a cache: absent or damaged, it is rebuilt
  }
}

/** Written whole or not at all (a temp file renamed over it). */
async function writeState(file: string, state: SyncState): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(temp, JSON.stringify(state), { mode: 0o600 });
  await fs.rename(temp, file);
}
