import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { forgetBackups } from './catalog/clear-index';
import { CATALOG_INDEX_LOCK } from './catalog/locks';
import { type RecordedRepository, catalogBackups, checkSameRepository, lockRepositoryIdentity, recordRepository, recordedRepository } from './catalog/repository-identity';
import { repositoryLocation, repositorySecret, vmdedupHome } from './config';
import { type CatalogSql, getCatalogSql, inTransaction } from './catalog/db';
import type { BlobStore } from './engine/repository/blob-store';
import { CachedBlobStore } from './engine/repository/cached-blob-store';
import { FsBlobStore } from './engine/repository/fs-blob-store';
import { Repository, RepositoryLockedError } from './engine/repository/repository';
import { parseS3Url } from './engine/repository/s3-location';
import { storageFault } from './engine/errors';
import { AppError } from './errors';

const CONFIG_KEY = 'config.json';

export type OpenRepositoryOptions = {
  /** Never create one, not even on a first run (restores: there is nothing to restore from). */
  mustExist?: boolean;
  /** The catalog to check the repository against (default: the process's catalog). */
  sql?: CatalogSql;
};

/**
 * The configured repository (VMDEDUP_REPOSITORY, else under VMDEDUP_HOME), checked against the one the
 * catalog indexes. A missing repository (config.json gone: an unmounted backup disk) or one with another id
 * is an error naming the folder, never a silent new one. A repository is created here only on a first run:
 * the catalog has none recorded and no backups, and the folder is missing or empty. Otherwise creation is
 * `vmdedup repository init` (initRepository). A catalog from before identities adopts the repository it
 * finds if that holds the catalog's newest backup.
 */
export async function openRepository(options: OpenRepositoryOptions = {}): Promise<Repository> {
  return (await open(options.mustExist ? 'must-exist' : 'create', options.sql))!;
}

/**
 * The repository as openRepository checks it, or undefined on a first run (nothing recorded, no backups,
 * no repository): for commands that only read or reconcile, which have no business creating one.
 */
export async function openRepositoryIfAny(options: { sql?: CatalogSql } = {}): Promise<Repository | undefined> {
  return open('if-any', options.sql);
}

async function open(mode: 'create' | 'must-exist' | 'if-any', catalogSql: CatalogSql | undefined): Promise<Repository | undefined> {
  const dir = repositoryLocation();
  const store = await blobStoreAt(dir);
  const sql = catalogSql ?? (await getCatalogSql());
  // The common case: two reads, no lock, no write.
  const [recorded, exists] = await Promise.all([recordedRepository(sql), hasConfig(store)]);
  if (recorded && exists) {
    const repo = await openIn(store);
    checkSameRepository(recorded, repo, dir);
    if (recorded.location !== dir || (repo.encrypted && !recorded.encrypted)) await recordRepository(sql, { repositoryId: repo.config.id, location: dir, encrypted: repo.encrypted });
    return repo;
  }
  return inTransaction(sql, async (client) => {
    await lockRepositoryIdentity(client);
    const current = await recordedRepository(client);
    let repo: Repository;
    if (await hasConfig(store)) {
      repo = await openIn(store);
      checkSameRepository(current, repo, dir);
      if (!current) await checkHoldsCatalog(client, repo, dir);
    } else {
      const backups = await catalogBackups(client);
      const empty = await storeIsEmpty(store);
      const firstRun = !current && backups.count === 0 && empty;
      if (firstRun && mode === 'if-any') return undefined;
      if (!firstRun || mode === 'must-exist') throw missingRepository(dir, current, backups.count, empty);
      repo = await Repository.openOrInit(store);
    }
    if (current?.repositoryId !== repo.config.id || current.location !== dir || (repo.encrypted && !current.encrypted)) await recordRepository(client, { repositoryId: repo.config.id, location: dir, encrypted: repo.encrypted });
    return repo;
  });
}

/** The repository folder as it is, unchecked against the catalog (for `catalog rebuild`, which records it itself). */
export async function openRepositoryFolder(): Promise<{ repo: Repository; location: string }> {
  const location = repositoryLocation();
  const store = await blobStoreAt(location);
  if (!(await hasConfig(store))) throw new AppError('REPOSITORY', { message: `no repository at ${location} (config.json is missing): is its disk mounted?` });
  return { repo: await openIn(store), location };
}

/**
 * `forgotten`: with replace, how many backup records the catalog dropped, and the repository it indexed before.
 * `recoveryKey`: of a repository created encrypted, to be shown once.
 */
export type InitResult = { repo: Repository; location: string; created: boolean; recoveryKey?: string; forgotten?: { backups: number; previous?: RecordedRepository } };

/**
 * `vmdedup repository init`: creates the repository in an empty (or missing) folder and makes the catalog
 * index it. A catalog that indexes another repository is refused unless `replace`, which also makes the
 * catalog forget its backup records (sources and VMs stay; the old repository is not touched, and
 * `catalog rebuild --adopt` with it mounted brings its backups back). An existing repository is kept.
 */
export async function initRepository(options: { sql?: CatalogSql; replace?: boolean; encrypt?: boolean } = {}): Promise<InitResult> {
  const location = repositoryLocation();
  const passphrase = options.encrypt ? repositorySecret() : undefined;
  if (options.encrypt && !passphrase) throw new AppError('BAD_INPUT', { message: `an encrypted repository needs a passphrase: put it in a file readable only by vmdedup's user and set VMDEDUP_PASSWORD_FILE to it (or set VMDEDUP_PASSWORD)` });
  const store = await blobStoreAt(location);
  const sql = options.sql ?? (await getCatalogSql());
  return inTransaction(sql, async (client) => {
    // Both locks, the index one first (the order a rebuild takes them in): a replace empties the index.
    if (options.replace) await client.query('SELECT pg_advisory_xact_lock($1)', [CATALOG_INDEX_LOCK]);
    await lockRepositoryIdentity(client);
    const current = await recordedRepository(client);
    if (await hasConfig(store)) {
      const repo = await openIn(store);
      if (options.encrypt && !repo.encrypted) throw new AppError('CONFLICT', { message: `${location} already holds repository ${repo.config.id}, which is not encrypted: an existing repository cannot be encrypted in place; create an encrypted one in an empty folder` });
      checkSameRepository(current, repo, location);
      if (!current) await checkHoldsCatalog(client, repo, location);
      if (current?.repositoryId !== repo.config.id || current.location !== location || (repo.encrypted && !current.encrypted)) await recordRepository(client, { repositoryId: repo.config.id, location, encrypted: repo.encrypted });
      return { repo, location, created: false };
    }
    if (!(await storeIsEmpty(store))) {
      throw new AppError('BAD_INPUT', { message: `${location} is not empty and holds no repository (no config.json): give an empty or new folder (VMDEDUP_REPOSITORY)` });
    }
    const backups = await catalogBackups(client);
    if ((current || backups.count > 0) && !options.replace) {
      const which = current ? `repository ${current.repositoryId} at ${current.location}` : 'a repository';
      throw new AppError('CONFLICT', {
        message: `this catalog indexes ${which} (${backups.count} backup images): if that repository is lost for good, `
          + "'vmdedup repository init --replace' creates a new one here and empties the catalog's index of backups (the old repository is not touched)",
      });
    }
    const { repo, recoveryKey } = await Repository.create(store, passphrase ? { encrypt: { passphrase } } : {});
    if (options.replace) await forgetBackups(client);
    await recordRepository(client, { repositoryId: repo.config.id, location, encrypted: repo.encrypted });
    return { repo, location, created: true, recoveryKey, forgotten: options.replace && (current || backups.count > 0) ? { backups: backups.count, previous: current } : undefined };
  });
}

/** A catalog from before repository ids adopts a repository only if it holds the catalog's newest backup. */
async function checkHoldsCatalog(client: pg.PoolClient, repo: Repository, dir: string): Promise<void> {
  const { newestId } = await catalogBackups(client);
  if (!newestId) return;
  const held = await repo.getBackupImage(newestId).then(() => true, () => false);
  if (!held) {
    throw new AppError('REPOSITORY', {
      message: `the repository at ${dir} does not hold this catalog's backups (backup ${newestId} is not in it): mount the right disk or set VMDEDUP_REPOSITORY; `
        + "'vmdedup catalog rebuild --adopt' makes this catalog index this repository instead",
    });
  }
}

function missingRepository(dir: string, recorded: RecordedRepository | undefined, backups: number, empty: boolean): AppError {
  const why = recorded
    ? `this catalog indexes repository ${recorded.repositoryId}${recorded.location === dir ? '' : `, last opened at ${recorded.location}`}`
    : backups > 0 ? `this catalog holds ${backups} backup images` : undefined;
  if (why) return new AppError('REPOSITORY', { message: `no repository at ${dir} (config.json is missing), but ${why}: is its disk mounted? If it is lost for good, 'vmdedup repository init --replace' starts a new one` });
  if (!empty) return new AppError('REPOSITORY', { message: `no repository at ${dir} (config.json is missing) and the folder is not empty: is it the right folder (VMDEDUP_REPOSITORY)?` });
  return new AppError('REPOSITORY', { message: `no repository at ${dir} (config.json is missing): nothing has been backed up yet` });
}

/**
 * Opens the repository in a store, an encrypted one with the secret of VMDEDUP_PASSWORD_FILE or VMDEDUP_PASSWORD (held
 * in memory only); a missing or wrong secret is one line saying what to set.
 */
async function openIn(store: BlobStore): Promise<Repository> {
  try {
    return await Repository.open(store, { secret: repositorySecret() });
  } catch (err) {
    if (!(err instanceof RepositoryLockedError)) throw err;
    const hint = err.reason === 'no-secret' ? ': set VMDEDUP_PASSWORD_FILE to a file holding its passphrase (or VMDEDUP_PASSWORD), or give a recovery key the same way'
      : err.reason === 'wrong-secret' ? ' (VMDEDUP_PASSWORD_FILE or VMDEDUP_PASSWORD): check it, or give a recovery key instead' : '';
    throw new AppError('REPOSITORY', { message: `${err.message}${hint}`, cause: err });
  }
}

/** Whether the store holds a repository's config; a storage failure (a bucket missing or refused) names the store. */
async function hasConfig(store: BlobStore): Promise<boolean> {
  return store.has(CONFIG_KEY).catch((err) => { throw storageFault(store.location, err); });
}

/** The store behind a repository location: a folder, or `s3://bucket/prefix` with the standard AWS configuration. */
async function blobStoreAt(location: string): Promise<BlobStore> {
  let s3;
  try {
    s3 = parseS3Url(location);
  } catch (err) {
    throw new AppError('BAD_INPUT', { message: `VMDEDUP_REPOSITORY: ${(err as Error).message}` });
  }
  if (!s3) return new FsBlobStore(location);
  // Loaded only for a bucket: the SDK is a few MB of code every CLI run would parse otherwise.
  const { S3BlobStore, s3ClientFromEnvironment } = await import('./engine/repository/s3-blob-store');
  // Image packs are read again and again (listings, plans, reconciles) and never change: kept on the local disk.
  return new CachedBlobStore(new S3BlobStore(s3, s3ClientFromEnvironment()), path.join(vmdedupHome(), 'cache', 'image-packs'));
}

/** A folder missing or empty but for the lost+found of a freshly made filesystem; a bucket prefix with no object. */
async function storeIsEmpty(store: BlobStore): Promise<boolean> {
  if (store instanceof FsBlobStore) return folderIsEmpty(store.root);
  try {
    for await (const page of store.list('')) if (page.length) return false;
  } catch (err) {
    throw storageFault(store.location, err);
  }
  return true;
}

async function folderIsEmpty(dir: string): Promise<boolean> {
  try {
    return (await fs.readdir(dir)).every((name) => name === 'lost+found');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

/**
 * The repository a `sync` copies into (`location`: a folder or s3://bucket/prefix), opened with `secret`; created when
 * the location is empty, like `source` (block size, compression) and encrypted when `encrypt` (required when the source
 * is encrypted). Not the catalog's: the catalog is not told of it.
 */
export async function openCopyTarget(options: { location: string; source: Repository; encrypt: boolean; secret?: string }): Promise<{ repo: Repository; created: boolean; recoveryKey?: string }> {
  const store = await blobStoreAt(options.location);
  if (await hasConfig(store)) {
    let repo: Repository;
    try {
      repo = await Repository.open(store, { secret: options.secret });
    } catch (err) {
      if (!(err instanceof RepositoryLockedError)) throw err;
      throw new AppError('REPOSITORY', { message: `${err.message}: set VMDEDUP_SYNC_PASSWORD_FILE (or VMDEDUP_SYNC_PASSWORD) to the copy's passphrase; without them the source's is tried`, cause: err });
    }
    if (!repo.encrypted) {
      if (options.encrypt) throw new AppError('CONFLICT', { message: `${options.location} holds repository ${repo.config.id}, which is not encrypted: --encrypt cannot encrypt it in place; give an empty folder or prefix for an encrypted copy` });
      // Key slots beside a config.json that says plain: the config was altered, and the next blocks would go in the clear.
      if (await hasKeySlots(store)) throw new AppError('REPOSITORY', { message: `${options.location} holds key slots (keys/) but its config.json says it is not encrypted: it was altered; nothing is copied into it` });
    }
    return { repo, created: false };
  }
  if (!(await storeIsEmpty(store))) throw new AppError('BAD_INPUT', { message: `${options.location} is not empty and holds no repository (no config.json): give an empty or new folder or prefix for the copy` });
  const encrypt = options.encrypt || options.source.encrypted;
  if (encrypt && !options.secret) throw new AppError('BAD_INPUT', { message: 'an encrypted copy needs a passphrase: set VMDEDUP_SYNC_PASSWORD_FILE (or VMDEDUP_SYNC_PASSWORD), or VMDEDUP_PASSWORD_FILE for the same passphrase as the source' });
  const { repo, recoveryKey } = await Repository.create(store, {
    blockSize: options.source.config.blockSize, zstdLevel: options.source.config.compression.level,
    ...(encrypt ? { encrypt: { passphrase: options.secret! } } : {}),
  });
  return { repo, created: true, recoveryKey };
}

async function hasKeySlots(store: BlobStore): Promise<boolean> {
  for await (const page of store.list('keys/')) if (page.length) return true;
  return false;
}
