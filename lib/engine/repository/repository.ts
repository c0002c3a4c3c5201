import { createHash, randomUUID } from 'node:crypto';
import { RepositoryError, storageFault } from '../errors';
import { type BlobStore, BlobNotFoundError } from './blob-store';
import { type ChunkId, type ChunkIdScheme, SHA256_IDS, chunkKey, shortId } from './chunk-id';
import {
  ENCRYPTION_CONFIG, type EncryptionConfig, type KeySlot, type ObjectSealer, RepositoryKeys, SealBrokenError, SealedBlobStore, SCRYPT_DEFAULTS,
  keySlotKey, makeKeySlot, newMasterKey, newRecoveryKey, readKeySlots, unlockMasterKey,
} from './encryption';
import { type BackupImageManifest, MANIFEST_FORMAT_VERSION, type StoredDiskManifest, isBlockSize, parseBackupImage, parseStoredDisk } from './manifests';
import { decodeImagePack, encodeImagePack, goneImageKey, imagePackKey, packMemberIds, parseImagesKey, parsePackedImageId } from './image-pack';

/** 4: encrypted (encryption.ts; a plain repository stays format 3, which older versions read); 3: backup images are
 *  stored in packs (image-pack.ts); 2: stored disks hold content only (manifests.ts). An older plain repository is
 *  read as it is and becomes format 3 when this version first writes a manifest into it (older readers then refuse
 *  it rather than miss its images). */
export const REPOSITORY_FORMAT_VERSION = 4;
/** The format a plain repository is written in. */
export const PLAIN_FORMAT_VERSION = 3;
/** The format of image packs (independent of encryption, which seals them whole). */
export const PACK_FORMAT_VERSION = 3;
/** 1 MiB: as fast as 4 MiB and 1.6x faster than 256 KiB, at a quarter of 4 MiB's cost per small change (README, Benchmark). */
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
/** zstd's fast mode: on VM-like data 1.4x the speed of level 1 for a 3% larger result (measured: README, benchmark). */
export const DEFAULT_ZSTD_LEVEL = -1;

export type RepositoryConfig = {
  formatVersion: number;
  id: string;
  createdAt: string;
  blockSize: number;
  /** How blocks are named: 'hmac-sha256' in an encrypted repository (chunk-id.ts, ChunkIdScheme). */
  hash: 'sha256' | 'hmac-sha256';
  compression: { algorithm: 'zstd'; level: number };
  /** Present when the repository is encrypted (format 4): every blob but this file and keys/ is sealed. */
  encryption?: EncryptionConfig;
};

/** What opening an encrypted repository needs: its passphrase or a recovery key's text. */
export type RepositoryOpenOptions = { secret?: string };

/** An encrypted repository opened without a secret, or with one that opens none of its key slots. */
export class RepositoryLockedError extends RepositoryError {
  constructor(message: string, readonly reason: 'no-secret' | 'wrong-secret' | 'malformed-recovery-key') {
    super(message);
    this.name = 'RepositoryLockedError';
  }
}

const CONFIG_KEY = 'config.json';

/**
 * Chunks, stored-disk manifests and backup-image manifests over a blob store.
 * Layout and guarantees: README.md beside this file.
 */
export class Repository {
  /** Pack id -> its member count (its key: images/<id>.<count>.pack), as the last listing of images/ showed it and
   *  this instance wrote. */
  private packCounts = new Map<string, number>();
  /** Packs read lately (packs are never rewritten: a key always holds the same bytes). */
  private readonly packsRead = new Map<string, Promise<unknown[]>>();

  /**
   * `store`: where blobs are read and written (sealed, in an encrypted repository); `clearStore`: the store itself,
   * for config.json and the key slots, and for moving damaged blobs aside as they are.
   */
  private constructor(
    readonly store: BlobStore, private readonly clearStore: BlobStore, readonly config: RepositoryConfig, readonly ids: ChunkIdScheme, private readonly master?: Buffer,
    /** An encrypted repository's sealing, for block pools that seal and open chunks in their workers (see putEncodedChunk). */
    readonly chunkSealer?: ObjectSealer,
  ) {}

  /** Whether blobs are sealed (format 4). */
  get encrypted(): boolean {
    return this.config.encryption !== undefined;
  }

  private async writableFormat(): Promise<void> {
    if (this.config.formatVersion >= PLAIN_FORMAT_VERSION) return;
    this.config.formatVersion = PLAIN_FORMAT_VERSION;
    await this.writeClear(CONFIG_KEY, Buffer.from(JSON.stringify(this.config, null, 2)));
  }

  /** Opens the repository in `store`, creating a plain one when it holds none (a first run). */
  static async openOrInit(store: BlobStore, init: { blockSize?: number; zstdLevel?: number } = {}): Promise<Repository> {
    const exists = await store.has(CONFIG_KEY).catch((err) => { throw storageFault(store.location, err); });
    if (exists) return Repository.open(store);
    return (await Repository.create(store, init)).repo;
  }

  /**
   * Creates a repository in a store that holds none. With `encrypt`, an encrypted one: a random master key, a key
   * slot for the passphrase and one for a new recovery key, whose text is returned (to be shown once). The key slots
   * are durable before config.json, whose presence says there is a repository.
   */
  static async create(store: BlobStore, init: { blockSize?: number; zstdLevel?: number; encrypt?: { passphrase: string; scryptCost?: typeof SCRYPT_DEFAULTS } } = {}): Promise<{ repo: Repository; recoveryKey?: string }> {
    const config: RepositoryConfig = {
      formatVersion: init.encrypt ? REPOSITORY_FORMAT_VERSION : PLAIN_FORMAT_VERSION,
      id: randomUUID(),
      createdAt: new Date().toISOString(),
      blockSize: init.blockSize ?? DEFAULT_BLOCK_SIZE,
      hash: init.encrypt ? 'hmac-sha256' : 'sha256',
      compression: { algorithm: 'zstd', level: init.zstdLevel ?? DEFAULT_ZSTD_LEVEL },
      ...(init.encrypt ? { encryption: ENCRYPTION_CONFIG } : {}),
    };
    if (!isBlockSize(config.blockSize)) throw new RepositoryError(`block size ${config.blockSize}: a power of two from 512 B to 16 MiB`);
    if (await store.has(CONFIG_KEY).catch((err) => { throw storageFault(store.location, err); })) {
      throw new RepositoryError(`${store.location} already holds a repository (config.json): not creating another over it`);
    }
    let repo: Repository;
    let recoveryKey: string | undefined;
    const ourSlots: string[] = [];
    if (init.encrypt) {
      if (!init.encrypt.passphrase) throw new RepositoryError('an encrypted repository needs a passphrase');
      const master = newMasterKey();
      recoveryKey = newRecoveryKey();
      repo = Repository.unlocked(store, config, master);
      for (const slot of [
        await makeKeySlot({ master, repositoryId: config.id, secret: init.encrypt.passphrase, kind: 'passphrase', scryptCost: init.encrypt.scryptCost }),
        await makeKeySlot({ master, repositoryId: config.id, secret: recoveryKey, kind: 'recovery', label: 'recovery key' }),
      ]) {
        await repo.writeKeySlot(slot);
        ourSlots.push(slot.id);
      }
      await repo.flush();
    } else {
      repo = new Repository(store, store, config, SHA256_IDS);
    }
    await repo.writeClear(CONFIG_KEY, Buffer.from(JSON.stringify(config, null, 2)));
    await repo.flush();
    // Two creators at once (two syncs making one new copy, say): the last config.json written wins, and the other
    // must stop before writing a blob under a key nothing will open. Its key slots go with it.
    const written = await store.get(CONFIG_KEY).then((bytes) => (JSON.parse(bytes.toString('utf8')) as { id?: unknown }).id, () => undefined);
    if (written !== config.id) {
      for (const id of ourSlots) await store.delete(keySlotKey(id)).catch(() => undefined);
      throw new RepositoryError(`another process created a repository at ${store.location} at the same time: use that one (run again)`);
    }
    return { repo, recoveryKey };
  }

  static async open(store: BlobStore, options: RepositoryOpenOptions = {}): Promise<Repository> {
    let config: RepositoryConfig;
    try {
      config = JSON.parse((await store.get(CONFIG_KEY)).toString('utf8'));
    } catch (err) {
      if (err instanceof BlobNotFoundError) throw new RepositoryError(`no repository at ${store.location} (config.json missing)`);
      const fault = storageFault(store.location, err);
      if (fault !== err) throw fault;
      throw new RepositoryError(`${store.location}/config.json is unreadable: ${(err as Error).message}`);
    }
    if (!config || typeof config !== 'object' || !Number.isInteger(config.formatVersion) || config.formatVersion < 1) {
      throw new RepositoryError(`${store.location}/config.json is damaged: no formatVersion`);
    }
    // A newer format may say anything else differently: refused as newer before its fields are checked.
    if (config.formatVersion > REPOSITORY_FORMAT_VERSION) {
      throw new RepositoryError(`repository format ${config.formatVersion} is newer than this vmdedup understands (${REPOSITORY_FORMAT_VERSION})`);
    }
    if (typeof config.id !== 'string' || !config.id) throw new RepositoryError(`${store.location}/config.json is damaged: no id`);
    if (!isBlockSize(config.blockSize)) throw new RepositoryError(`${store.location}/config.json is damaged: block size ${String(config.blockSize)} is not a power of two from 512 B to 16 MiB`);
    if (!Number.isInteger(config.compression?.level) || config.compression.level < -131072 || config.compression.level > 22) {
      throw new RepositoryError(`${store.location}/config.json is damaged: zstd level ${String(config.compression?.level)}`);
    }
    if (!config.encryption) {
      if (config.hash !== 'sha256') throw new RepositoryError(`${store.location}/config.json is damaged: a plain repository names blocks by sha256`);
      return new Repository(store, store, config, SHA256_IDS);
    }
    const { cipher, keyDerivation, chunkIds } = config.encryption;
    if (cipher !== ENCRYPTION_CONFIG.cipher || keyDerivation !== ENCRYPTION_CONFIG.keyDerivation || chunkIds !== ENCRYPTION_CONFIG.chunkIds || config.hash !== 'hmac-sha256') {
      throw new RepositoryError(`repository ${store.location} is encrypted in a way this vmdedup does not know (${JSON.stringify(config.encryption)})`);
    }
    if (!options.secret) throw new RepositoryLockedError(`repository ${store.location} is encrypted: its passphrase or recovery key is needed`, 'no-secret');
    const { master, damaged } = await unlock(store, config.id, options.secret);
    if (!master) {
      // A slot skipped as damaged may be the one the secret was for: say so, by name.
      const skipped = damaged.length ? ` (skipped as damaged: ${damaged.slice(0, 3).join('; ')}${damaged.length > 3 ? ` and ${damaged.length - 3} more` : ''})` : '';
      throw new RepositoryLockedError(`the passphrase given opens no key slot of repository ${store.location}${skipped}`, 'wrong-secret');
    }
    return Repository.unlocked(store, config, master);
  }

  private static unlocked(store: BlobStore, config: RepositoryConfig, master: Buffer): Repository {
    const keys = new RepositoryKeys(master, config.id);
    return new Repository(new SealedBlobStore(store, keys), store, config, { algorithm: 'hmac-sha256', key: keys.chunkIdKey }, master, keys.sealer);
  }

  /** The key slots of an encrypted repository (none for a plain one), and those that are damaged. */
  async keySlots(): Promise<{ slots: KeySlot[]; damaged: string[] }> {
    if (!this.encrypted) return { slots: [], damaged: [] };
    try {
      return await readKeySlots(this.clearStore);
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  /**
   * Adds a key slot: a passphrase (`secret`), or a new recovery key (returned: shown once). Needs the repository
   * unlocked (opened with a secret that opens a slot), since it wraps the master key again.
   */
  async addKeySlot(options: { kind: 'passphrase'; secret: string; label?: string; scryptCost?: typeof SCRYPT_DEFAULTS } | { kind: 'recovery'; label?: string }): Promise<{ slot: KeySlot; recoveryKey?: string }> {
    if (!this.master) throw new RepositoryError(`repository ${this.store.location} is not encrypted: it has no keys`);
    if (options.kind === 'passphrase' && !options.secret) throw new RepositoryError('a key slot needs a passphrase');
    const recoveryKey = options.kind === 'recovery' ? newRecoveryKey() : undefined;
    const slot = await makeKeySlot({
      master: this.master, repositoryId: this.config.id, secret: recoveryKey ?? (options as { secret: string }).secret, kind: options.kind,
      label: options.label ?? (options.kind === 'recovery' ? 'recovery key' : undefined), scryptCost: options.kind === 'passphrase' ? options.scryptCost : undefined,
    });
    await this.writeKeySlot(slot);
    await this.flush();
    return { slot, recoveryKey };
  }

  /** Removes a key slot; the last one is refused (nothing could open the repository again). Durable when it resolves. */
  async removeKeySlot(id: string): Promise<void> {
    const { slots } = await this.keySlots();
    if (!slots.some((slot) => slot.id === id)) throw new RepositoryError(`repository ${this.store.location} has no key slot ${id} (see 'vmdedup key list')`);
    if (slots.length === 1) throw new RepositoryError(`key slot ${id} is the repository's last: without it nothing opens the repository; add another first ('vmdedup key add')`);
    try {
      const removed = await this.clearStore.get(keySlotKey(id));
      await this.clearStore.delete(keySlotKey(id));
      await this.clearStore.flush?.();
      // Two removals at once (of two different slots) each saw the other's slot: whoever finds none left puts its
      // own back, so the repository never ends with no slot (there is no lock across hosts and buckets).
      if ((await this.keySlots()).slots.length === 0) {
        await this.writeClear(keySlotKey(id), removed);
        await this.flush();
        throw new RepositoryError(`another key change ran at the same time and key slot ${id} would have been the last: it is kept; run 'vmdedup key list' and try again`);
      }
    } catch (err) {
      if (err instanceof RepositoryError) throw err;
      throw storageFault(this.store.location, err);
    }
  }

  private async writeKeySlot(slot: KeySlot): Promise<void> {
    await this.writeClear(keySlotKey(slot.id), Buffer.from(JSON.stringify(slot, null, 2)));
  }

  /** A put past the sealing (config.json, keys/, a chunk a block worker sealed), with storage failures named as write's are. */
  private async writeClear(key: string, data: Uint8Array): Promise<void> {
    try {
      await this.clearStore.put(key, data);
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  hasChunk(id: ChunkId): Promise<boolean> {
    return this.exists(chunkKey(id));
  }

  /**
   * Stores an already-encoded chunk (see chunk-codec). Durable only after the next flush(). `sealed`: the frame was
   * sealed already under its key (by a block pool given `chunkSealer`), and goes to the store as it is.
   */
  async putEncodedChunk(id: ChunkId, encoded: Uint8Array, options: { sealed?: boolean } = {}): Promise<void> {
    if (!options.sealed) return this.write(chunkKey(id), encoded);
    if (!this.chunkSealer) throw new Error('a sealed chunk for a repository that is not encrypted');
    await this.writeClear(chunkKey(id), encoded);
  }

  /**
   * The durability barrier: every blob stored before it survives a power loss once it resolves. Called before
   * any manifest that names those blobs is written, and after a backup image (before the catalog records it).
   */
  async flush(): Promise<void> {
    try {
      await this.store.flush?.();
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  /** What the store can still take, where it can tell (undefined: no limit known, or it cannot be asked now). */
  async freeBytes(): Promise<number | undefined> {
    return this.store.freeBytes?.().catch(() => undefined);
  }

  /** Removes temp files left by killed writers (see the blob store's rule); cheap: run before each backup. */
  async sweepTemporaryFiles(): Promise<{ removed: number; kept: number }> {
    try {
      return (await this.store.sweepTemporaryFiles?.()) ?? { removed: 0, kept: 0 };
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  /** A put whose storage failure (ENOSPC, EIO…) becomes a RepositoryStorageError naming the repository. */
  private async write(key: string, data: Uint8Array): Promise<void> {
    try {
      await this.store.put(key, data);
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  private async exists(key: string): Promise<boolean> {
    try {
      return await this.store.has(key);
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  /**
   * Reads a chunk's stored frame into `target` (no allocation where the store allows); returns its length. `sealed`:
   * the frame as stored, still sealed (a block pool given `chunkSealer` opens and checks it), SEAL_OVERHEAD longer.
   */
  async readEncodedChunkInto(id: ChunkId, target: Uint8Array, options: { sealed?: boolean } = {}): Promise<number> {
    if (options.sealed && !this.chunkSealer) throw new Error('a sealed read from a repository that is not encrypted');
    const store = options.sealed ? this.clearStore : this.store;
    try {
      if (store.readInto) return await store.readInto(chunkKey(id), target);
      const stored = await store.get(chunkKey(id));
      if (stored.length > target.length) throw new RepositoryError(`chunk ${shortId(id)} is corrupt: larger than a block`);
      target.set(stored);
      return stored.length;
    } catch (err) {
      if (err instanceof BlobNotFoundError) throw new RepositoryError(`chunk ${shortId(id)} is missing from ${this.store.location}`);
      if (err instanceof RepositoryError) throw err;
      if (err instanceof SealBrokenError) throw new RepositoryError(`chunk ${shortId(id)} is corrupt: it fails its authentication check`);
      throw new RepositoryError(`chunk ${shortId(id)} is unreadable: ${(err as Error).message}`);
    }
  }

  hasStoredDisk(digest: string): Promise<boolean> {
    return this.exists(storedDiskKey(digest));
  }

  /** Which of these stored disks the repository holds: asked one by one for a few, from one listing of disks/ for
   *  many (a pool's 10,000 overlays: 10,000 stats against one listing). */
  async storedDisksHeld(digests: string[]): Promise<Set<string>> {
    const wanted = new Set(digests);
    const held = new Set<string>();
    if (wanted.size <= STORED_DISKS_ASKED_ALONE) {
      for (const digest of wanted) if (await this.hasStoredDisk(digest)) held.add(digest);
      return held;
    }
    for await (const page of this.storedDiskDigests()) for (const digest of page) if (wanted.has(digest)) held.add(digest);
    return held;
  }

  /** Makes the chunks it names durable first (write order: README, Guarantees). */
  async putStoredDisk(manifest: StoredDiskManifest): Promise<void> {
    await this.writableFormat();
    await this.flush();
    await this.write(storedDiskKey(manifest.digest), Buffer.from(JSON.stringify(manifest)));
  }

  async getStoredDisk(digest: string): Promise<StoredDiskManifest> {
    const what = `stored disk ${shortId(digest)}`;
    return parseStoredDisk(await this.readManifest(storedDiskKey(digest), what), what, digest);
  }

  /** Durable when it resolves, with everything it names: the catalog may record it then. */
  async putBackupImage(manifest: BackupImageManifest): Promise<void> {
    await this.putBackupImages([manifest]);
  }

  /**
   * Many images at once (a run's batch of small VMs): one barrier before (everything they name is durable first), the
   * images written, one barrier after. Durable when it resolves; on a failure, none may be recorded. Images with
   * packed ids (packedImageId) must be the members of one pack, in order: they are written as that one pack. Others
   * (single ids, as older versions made them) are each a file of their own.
   */
  async putBackupImages(manifests: BackupImageManifest[]): Promise<void> {
    if (manifests.length === 0) return;
    const first = parsePackedImageId(manifests[0].id);
    // Checked whole before anything is written.
    const pack = first ? encodeImagePack(first.packId, manifests, PACK_FORMAT_VERSION) : undefined;
    const packed = manifests.find((manifest) => parsePackedImageId(manifest.id));
    if (!first && packed) throw new RepositoryError(`image ${packed.id} is packed: write its pack whole`);
    await this.writableFormat();
    await this.flush();
    if (first) {
      await this.write(imagePackKey(first.packId, manifests.length), pack!);
      this.packCounts.set(first.packId, manifests.length);
    } else {
      for (const manifest of manifests) await this.write(backupImageKey(manifest.id), Buffer.from(JSON.stringify(manifest, null, 1)));
    }
    await this.flush();
  }

  async getBackupImage(id: string): Promise<BackupImageManifest> {
    const what = `backup image ${id}`;
    const packed = parsePackedImageId(id);
    if (!packed) return parseBackupImage(await this.readManifest(backupImageKey(id), what), what, id);
    const count = await this.packCountOf(packed.packId);
    if (count === undefined || packed.index >= count || (await this.exists(goneImageKey(id)))) throw new RepositoryError(`${what} is missing from ${this.store.location}`);
    const members = await this.packMembers(packed.packId, count);
    // A copy: the pack stays as read for the next reader, whatever this one does with its image.
    return parseBackupImage(structuredClone(members[packed.index]), what, id);
  }

  /** Whether the repository holds this image (a pruned member of a pack is not held). */
  async hasBackupImage(id: string): Promise<boolean> {
    const packed = parsePackedImageId(id);
    if (!packed) return (await this.sizeOf(backupImageKey(id))) !== undefined;
    // A pack known from a listing is asked for by its key (a pack's key never changes): reconcile asks once per image
    // it records, and a listing of images/ each time made a reconcile of n images n listings.
    const count = await this.packCountOf(packed.packId);
    return count !== undefined && packed.index < count && (await this.exists(imagePackKey(packed.packId, count))) && !(await this.exists(goneImageKey(id)));
  }

  /** Every backup image's id, sorted (ids sort by time: oldest first): one listing of images/, no manifest read. */
  async backupImageIds(): Promise<string[]> {
    const { single, packs, gone } = await this.listImages();
    const ids = [...single];
    for (const [packId, count] of packs) for (const id of packMemberIds(packId, count)) if (!gone.has(id)) ids.push(id);
    return ids.sort();
  }

  /**
   * The images by the blob of images/ that holds them: a pack (by its id), or an image stored on its own (by the
   * image's id). One listing of images/; a pack's members (those not pruned) are made only when asked for, so that a
   * reconcile of a long history compares blobs, not images.
   */
  async backupImageBlobs(): Promise<{ blobs: string[]; images: number; imagesOf(blob: string): string[] }> {
    const { single, packs, gone } = await this.listImages();
    const alone = new Set(single);
    let images = single.length;
    for (const count of packs.values()) images += count;
    // A mark counts where it names a member of a pack listed (a kill can leave marks of a pack already gone).
    for (const id of gone) {
      const { packId, index } = parsePackedImageId(id)!;
      if (index < (packs.get(packId) ?? 0)) images--;
    }
    // An image stored alone and a pack may share an id (both are a time and 6 random digits): one blob, holding both.
    return {
      blobs: [...new Set([...single, ...packs.keys()])].sort(),
      images,
      imagesOf: (blob) => {
        const count = packs.get(blob);
        const members = count === undefined ? [] : packMemberIds(blob, count).filter((id) => !gone.has(id));
        return alone.has(blob) ? [blob, ...members] : members;
      },
    };
  }

  /**
   * Removes backup images (only prune does, and a backup withdrawing what it could not record). A member of a pack is
   * marked gone; a pack goes once none of its members is left, then its marks. Durable when it resolves.
   */
  async removeBackupImages(ids: string[]): Promise<void> {
    const { packs, gone } = await this.listImages();
    const emptied = new Set<string>();
    for (const id of ids) {
      const packed = parsePackedImageId(id);
      if (!packed) {
        await this.deleteKey(backupImageKey(id));
        continue;
      }
      const count = packs.get(packed.packId);
      if (count === undefined || packed.index >= count || gone.has(id)) continue;
      gone.add(id);
      if (packMemberIds(packed.packId, count).every((member) => gone.has(member))) emptied.add(packed.packId);
      else await this.write(goneImageKey(id), new Uint8Array(0));
    }
    for (const packId of emptied) await this.deleteKey(imagePackKey(packId, packs.get(packId)!));
    await this.flush();
    // A mark outlives its pack only until here; a kill before leaves marks of no pack, which listings ignore.
    for (const packId of emptied) {
      for (const id of packMemberIds(packId, packs.get(packId)!)) if (gone.has(id)) await this.deleteKey(goneImageKey(id));
      this.packCounts.delete(packId);
    }
    await this.flush();
  }

  /**
   * The bytes that removing these images frees: their own files, and the packs none of whose members would be left
   * (a pack of which some members stay frees nothing yet).
   */
  async backupImageBytes(ids: string[]): Promise<number> {
    const { packs, gone } = await this.listImages();
    const removed = new Set(ids);
    let bytes = 0;
    for (const id of removed) if (!parsePackedImageId(id)) bytes += (await this.sizeOf(backupImageKey(id))) ?? 0;
    const touched = new Set([...removed].map((id) => parsePackedImageId(id)?.packId).filter((packId): packId is string => !!packId && packs.has(packId)));
    for (const packId of touched) {
      const count = packs.get(packId)!;
      const left = packMemberIds(packId, count).some((id) => !gone.has(id) && !removed.has(id));
      if (!left) bytes += (await this.sizeOf(imagePackKey(packId, count))) ?? 0;
    }
    return bytes;
  }

  /** images/: single images, packs (with their member counts) and the marks of pruned members. */
  private async listImages(): Promise<{ single: string[]; packs: Map<string, number>; gone: Set<string> }> {
    const single: string[] = [];
    const packs = new Map<string, number>();
    const gone = new Set<string>();
    for await (const page of this.listed('images/', (key) => key)) {
      for (const key of page) {
        const parsed = parseImagesKey(key);
        if (parsed && 'pack' in parsed) packs.set(parsed.pack.packId, parsed.pack.count);
        else if (parsed) gone.add(parsed.gone);
        // A file named like a pack's member is no image: no version writes one, and readers look for it in its pack.
        else if (key.endsWith('.json') && key.length > 12 && !key.slice(7, -5).includes('/') && !parsePackedImageId(key.slice(7, -5))) single.push(key.slice(7, -5));
      }
    }
    this.packCounts = new Map(packs);
    return { single, packs, gone };
  }

  /** A pack's member count, from the last listing of images/ (listed again when it is not there). */
  private async packCountOf(packId: string): Promise<number | undefined> {
    if (!this.packCounts.has(packId)) await this.listImages();
    return this.packCounts.get(packId);
  }

  /** A pack's members (untrusted JSON), the last few packs read kept: images of one pack are mostly read together
   *  (and at once: readers of one pack share its read). */
  private packMembers(packId: string, count: number): Promise<unknown[]> {
    const key = imagePackKey(packId, count);
    const cached = this.packsRead.get(key);
    if (cached) return cached;
    const reading = this.readPack(key, packId, count);
    this.packsRead.set(key, reading);
    reading.catch(() => this.packsRead.delete(key));
    if (this.packsRead.size > PACKS_KEPT) this.packsRead.delete(this.packsRead.keys().next().value!);
    return reading;
  }

  private async readPack(key: string, packId: string, count: number): Promise<unknown[]> {
    const what = `image pack ${key.slice(7)}`;
    let bytes: Buffer;
    try {
      bytes = await this.store.get(key);
    } catch (err) {
      if (err instanceof BlobNotFoundError) throw new RepositoryError(`${what} is missing from ${this.store.location}`);
      const fault = storageFault(this.store.location, err);
      if (fault !== err) throw fault;
      throw new RepositoryError(`${what} is unreadable: ${(err as Error).message}`);
    }
    return decodeImagePack(bytes, packId, count, what, PACK_FORMAT_VERSION);
  }

  private async deleteKey(key: string): Promise<void> {
    try {
      await this.store.delete(key);
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  /**
   * Protection kept in the repository (protected/<id>), not only in the catalog: a catalog rebuilt from the
   * repository keeps it, so no prune after a rebuild removes a backup someone protected.
   */
  async setProtected(id: string, value: boolean): Promise<void> {
    const key = protectedKey(id);
    if (value) {
      await this.write(key, new TextEncoder().encode(JSON.stringify({ backupId: id, at: new Date().toISOString() })));
    } else {
      try {
        await this.store.delete(key);
      } catch (err) {
        if (!(err instanceof BlobNotFoundError)) throw storageFault(this.store.location, err);
      }
    }
    await this.flush();
  }

  /** The ids of the protected backup images (protected/). */
  async protectedIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const page of this.listed('protected/', (key) => (/^protected\/[0-9A-Za-z-]+$/.test(key) ? key.slice(10) : undefined))) ids.push(...page);
    return ids.sort();
  }

  /** Every chunk id the store holds, a page at a time (what garbage collection may remove). Other names are skipped. */
  async *chunkIds(): AsyncIterable<ChunkId[]> {
    yield* this.listed('chunks/', (key) => (/^chunks\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(key) && key.slice(7, 9) === key.slice(10, 12) ? key.slice(10) as ChunkId : undefined));
  }

  /** Every stored disk's digest, a page at a time. */
  async *storedDiskDigests(): AsyncIterable<string[]> {
    yield* this.listed('disks/', (key) => (/^disks\/[0-9a-f]{64}\.json$/.test(key) ? key.slice(6, -5) : undefined));
  }

  private async *listed<T>(prefix: string, pick: (key: string) => T | undefined): AsyncIterable<T[]> {
    try {
      for await (const page of this.store.list(prefix)) {
        const picked: T[] = [];
        for (const key of page) {
          const value = pick(key);
          if (value !== undefined) picked.push(value);
        }
        if (picked.length) yield picked;
      }
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  /** The stored size of a blob (a chunk's frame, a manifest), or undefined when it is absent. */
  async sizeOf(key: string): Promise<number | undefined> {
    try {
      return await this.store.size(key);
    } catch (err) {
      if (err instanceof BlobNotFoundError) return undefined;
      throw storageFault(this.store.location, err);
    }
  }

  /**
   * Removes a chunk or a stored disk (keys as chunkKey and storedDiskKey make them): only garbage collection does,
   * under its protocol (gc/README.md). Images go through removeBackupImages. Durable after the next flush().
   */
  async remove(key: string): Promise<void> {
    if (!/^(chunks\/[0-9a-f]{2}\/[0-9a-f]{64}|disks\/[0-9a-f]{64}\.json)$/.test(key)) throw new RepositoryError(`refusing to remove '${key}': not a chunk or stored disk`);
    await this.deleteKey(key);
  }

  /**
   * Moves a damaged chunk or stored disk out of the way (to damaged/<chunks|disks>/<name>-<time>, for inspection;
   * nothing reads it): the next backup that meets the same content finds it absent and stores it again.
   */
  async moveAside(key: string): Promise<void> {
    if (!/^(chunks\/[0-9a-f]{2}\/[0-9a-f]{64}|disks\/[0-9a-f]{64}\.json)$/.test(key)) throw new RepositoryError(`refusing to move '${key}' aside: not a chunk or stored disk`);
    try {
      // The bytes as stored (sealed ones too: a damaged blob does not open, and it is kept for inspection as it is).
      const bytes = await this.clearStore.get(key).catch((err) => (err instanceof BlobNotFoundError ? undefined : Promise.reject(err)));
      if (bytes) await this.clearStore.put(`damaged/${key.startsWith('chunks/') ? 'chunks' : 'disks'}/${key.split('/').pop()}-${Date.now()}`, bytes);
      await this.clearStore.delete(key);
      await this.flush();
    } catch (err) {
      throw storageFault(this.store.location, err);
    }
  }

  /** A manifest's JSON, not yet trusted: its shape is checked by the caller (parseBackupImage, parseStoredDisk). */
  private async readManifest(key: string, what: string): Promise<unknown> {
    let parsed: { formatVersion?: unknown } | null;
    try {
      parsed = JSON.parse((await this.store.get(key)).toString('utf8')) as { formatVersion?: unknown } | null;
    } catch (err) {
      if (err instanceof BlobNotFoundError) throw new RepositoryError(`${what} is missing from ${this.store.location}`);
      const fault = storageFault(this.store.location, err);
      if (fault !== err) throw fault;
      throw new RepositoryError(`${what} is unreadable: ${(err as Error).message}`);
    }
    if (typeof parsed?.formatVersion === 'number' && parsed.formatVersion > MANIFEST_FORMAT_VERSION) throw new RepositoryError(`${what} has a newer format (${parsed.formatVersion})`);
    return parsed;
  }
}

/**
 * Master keys this process unlocked, by a hash of the repository, the slot as stored and the secret: a server opens
 * the repository per request, and scrypt costs 0.2 s. A slot removed or rewritten no longer matches, so a removed
 * passphrase stops working here too. In memory only.
 */
const unlocked = new Map<string, Buffer>();

/** The master key that `secret` opens in the store's key slots (undefined: none). */
async function unlock(store: BlobStore, repositoryId: string, secret: string): Promise<{ master?: Buffer; damaged: string[] }> {
  let slots: KeySlot[];
  let damaged: string[];
  try {
    ({ slots, damaged } = await readKeySlots(store));
  } catch (err) {
    throw storageFault(store.location, err);
  }
  const cacheKey = (slot: KeySlot) => createHash('sha256').update(JSON.stringify([repositoryId, slot.id, slot.kdf, slot.wrappedKey, secret])).digest('hex');
  for (const slot of slots) {
    const known = unlocked.get(cacheKey(slot));
    if (known) return { master: known, damaged };
  }
  let opened;
  try {
    opened = await unlockMasterKey(slots, secret, repositoryId);
  } catch (err) {
    throw new RepositoryLockedError(`repository ${store.location}: ${(err as Error).message}`, 'malformed-recovery-key');
  }
  if (!opened) return { damaged };
  unlocked.set(cacheKey(opened.slot), opened.master);
  return { master: opened.master, damaged };
}

/** Up to this many stored disks are asked about one by one (storedDisksHeld); more, from a listing. */
const STORED_DISKS_ASKED_ALONE = 64;

/** Packs kept decoded by a Repository (a pack of 256 pool images is about 1.3 MB decoded). */
const PACKS_KEPT = 4;

export function storedDiskKey(digest: string): string {
  if (!/^[0-9a-f]{64}$/.test(digest)) throw new RepositoryError(`invalid stored disk digest '${digest}'`);
  return `disks/${digest}.json`;
}

export function protectedKey(id: string): string {
  if (!/^[0-9A-Za-z-]+$/.test(id)) throw new RepositoryError(`invalid backup image id '${id}'`);
  return `protected/${id}`;
}

export function backupImageKey(id: string): string {
  if (!/^[0-9A-Za-z-]+$/.test(id)) throw new RepositoryError(`invalid backup image id '${id}'`);
  return `images/${id}.json`;
}

/** Merkle digest of a disk: over each file's index and size and its blocks' ids (zero blocks by their id: zeroBlockId). */
export function diskDigest(files: { size: number; blockIds: ChunkId[] }[]): string {
  const hash = createHash('sha256').update('vmdedup-disk-v1\n');
  files.forEach((file, index) => {
    hash.update(`${index} ${file.size}\n`);
    for (const id of file.blockIds) hash.update(id);
  });
  return hash.digest('hex');
}

/** Backup ids sort by time: 20261125T140501Z-3f9a1c. */
export function newBackupImageId(now: Date): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomUUID().slice(0, 6)}`;
}
