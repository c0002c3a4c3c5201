/**
 * Encryption at rest (README.md beside this file, "Encryption"): every blob but config.json and the key slots is
 * sealed with AES-256-GCM under a key derived per object from the repository's random master key; block ids are
 * HMAC-SHA256 under another derived key; the master key is kept in key slots, each wrapping it under a passphrase
 * (scrypt, parameters recorded) or a printable recovery key. Keys live in memory only.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { type BlobStore, BlobNotFoundError } from './blob-store';

const scrypt = promisify(scryptCallback) as (password: string | Buffer, salt: Buffer, length: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;

/** What config.json records of an encrypted repository. */
export type EncryptionConfig = { cipher: 'aes-256-gcm'; keyDerivation: 'hmac-sha256'; chunkIds: 'hmac-sha256' };
export const ENCRYPTION_CONFIG: EncryptionConfig = { cipher: 'aes-256-gcm', keyDerivation: 'hmac-sha256', chunkIds: 'hmac-sha256' };

/** A sealed blob: "VMDS", version 1, a 12-byte random nonce, the ciphertext, GCM's 16-byte tag. */
const SEAL_HEADER = Buffer.from('VMDS\x01', 'latin1');
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const SEAL_OVERHEAD = SEAL_HEADER.length + NONCE_BYTES + TAG_BYTES;
/** Where a sealed blob's body (the ciphertext) starts: after the header and the nonce. */
export const SEAL_BODY_AT = SEAL_HEADER.length + NONCE_BYTES;
/** The cipher's input per call: small enough that its outputs come from reused memory. */
const SEAL_PIECE = 64 * 1024;

/**
 * scrypt's cost for a new passphrase slot: N = 2^16, r = 8, p = 1 (64 MiB, about 0.2 s here; kopia's choice).
 * Each slot records its own, so a later default does not lock older slots out.
 */
export const SCRYPT_DEFAULTS = { N: 2 ** 16, r: 8, p: 1 };
/** The most a slot may ask of an unlock: memory (128·N·r bytes; 64 MiB by default) and work (N·r·p: 16 times the default's). */
const SCRYPT_MAX_MEMORY = 256 * 2 ** 20;
const SCRYPT_MAX_WORK = 16 * SCRYPT_DEFAULTS.N * SCRYPT_DEFAULTS.r * SCRYPT_DEFAULTS.p;

/** A blob whose tag does not verify under its name's key: damaged, tampered with, or another blob put in its place. */
export class SealBrokenError extends Error {
  constructor(readonly key: string) {
    super(`${key} fails its authentication check (damaged, altered or not this repository's)`);
    this.name = 'SealBrokenError';
  }
}

/** The keys an unlocked repository works with, derived from its master key. */
export class RepositoryKeys {
  /** The HMAC key of block ids. */
  readonly chunkIdKey: Buffer;
  /** Seals and opens objects under keys derived from one root by their names; handed to block workers (in memory). */
  readonly sealer: ObjectSealer;

  constructor(master: Buffer, repositoryId: string) {
    if (master.length !== 32) throw new Error('a master key is 32 bytes');
    this.chunkIdKey = Buffer.from(hkdfSync('sha256', master, repositoryId, 'vmdedup chunk ids v1', 32));
    this.sealer = new ObjectSealer(Buffer.from(hkdfSync('sha256', master, repositoryId, 'vmdedup objects v1', 32)));
  }

  seal(name: string, plain: Uint8Array): Buffer {
    return this.sealer.seal(name, plain);
  }

  unseal(name: string, sealed: Uint8Array): Buffer {
    return this.sealer.unseal(name, sealed);
  }
}

/**
 * AES-256-GCM under a key per object name, derived from `root`: what seals every blob of an encrypted repository, in
 * the main thread (SealedBlobStore) and in block workers (chunks sealed and opened beside their compression).
 */
export class ObjectSealer {
  constructor(readonly root: Buffer) {}

  /** An object's own key: HMAC-SHA256 of its name under the root (HKDF-Expand's PRF; names are unique). */
  private objectKey(name: string): Buffer {
    return createHmac('sha256', this.root).update(`object\0${name}`).digest();
  }

  seal(name: string, plain: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(SEAL_OVERHEAD + plain.length);
    out.set(plain, SEAL_BODY_AT);
    this.sealInPlace(name, out, plain.length);
    return out;
  }

  /**
   * Seals the `length` plain bytes at `buffer[SEAL_BODY_AT…]` in place: header and nonce before them, the tag after
   * (`buffer` has SEAL_OVERHEAD bytes of room beyond them). Returns the sealed length. No block-sized allocation: the
   * cipher runs over pieces whose outputs come from the allocator's reused memory (a fresh megabyte per block cost
   * page faults that showed as a third more CPU time).
   */
  sealInPlace(name: string, buffer: Uint8Array, length: number): number {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.objectKey(name), nonce);
    cipher.setAAD(SEAL_HEADER);
    buffer.set(SEAL_HEADER, 0);
    buffer.set(nonce, SEAL_HEADER.length);
    let at = SEAL_BODY_AT;
    for (let from = SEAL_BODY_AT; from < SEAL_BODY_AT + length; from += SEAL_PIECE) {
      const piece = cipher.update(buffer.subarray(from, Math.min(from + SEAL_PIECE, SEAL_BODY_AT + length)));
      buffer.set(piece, at);
      at += piece.length;
    }
    const tail = cipher.final();
    buffer.set(tail, at);
    at += tail.length;
    buffer.set(cipher.getAuthTag(), at);
    return at + TAG_BYTES;
  }

  /**
   * Opens a sealed blob in place: the plain bytes end up at `sealed[SEAL_BODY_AT…]`; returns their length, or
   * undefined when the blob does not verify (then what is there is not to be used).
   */
  openInPlace(name: string, sealed: Uint8Array): number | undefined {
    if (sealed.length < SEAL_OVERHEAD || !SEAL_HEADER.equals(sealed.subarray(0, SEAL_HEADER.length))) return undefined;
    const decipher = createDecipheriv('aes-256-gcm', this.objectKey(name), sealed.subarray(SEAL_HEADER.length, SEAL_BODY_AT));
    decipher.setAAD(SEAL_HEADER);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const end = sealed.length - TAG_BYTES;
    let at = SEAL_BODY_AT;
    try {
      for (let from = SEAL_BODY_AT; from < end; from += SEAL_PIECE) {
        const piece = decipher.update(sealed.subarray(from, Math.min(from + SEAL_PIECE, end)));
        sealed.set(piece, at);
        at += piece.length;
      }
      const tail = decipher.final();
      sealed.set(tail, at);
      return at + tail.length - SEAL_BODY_AT;
    } catch {
      return undefined;
    }
  }

  /** The plain bytes of a blob sealed under `name` (opened in a copy); SealBrokenError when it does not verify. */
  unseal(name: string, sealed: Uint8Array): Buffer {
    const copy = Buffer.from(sealed);
    const length = this.openInPlace(name, copy);
    if (length === undefined) throw new SealBrokenError(name);
    return copy.subarray(SEAL_BODY_AT, SEAL_BODY_AT + length);
  }

}

/** Blobs kept in the clear: the repository's config (it says the repository is encrypted) and the key slots. */
export function isClearKey(key: string): boolean {
  return key === 'config.json' || key.startsWith('keys/');
}

/**
 * A blob store whose blobs are sealed (RepositoryKeys.seal) on the way in and checked and opened on the way out.
 * Sizes are the plain sizes (the store contract: what get returns). Listing, deletes and flushes pass through.
 */
export class SealedBlobStore implements BlobStore {
  readonly location: string;
  readonly flush?: () => Promise<void>;
  readonly freeBytes?: () => Promise<number | undefined>;
  readonly sweepTemporaryFiles?: () => Promise<{ removed: number; kept: number }>;

  constructor(readonly inner: BlobStore, private readonly keys: RepositoryKeys) {
    this.location = inner.location;
    if (inner.flush) this.flush = () => inner.flush!();
    if (inner.freeBytes) this.freeBytes = () => inner.freeBytes!();
    if (inner.sweepTemporaryFiles) this.sweepTemporaryFiles = () => inner.sweepTemporaryFiles!();
  }

  private sealedOnly(key: string): void {
    if (isClearKey(key)) throw new Error(`${key} is kept in the clear: not through the sealed store`);
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    this.sealedOnly(key);
    await this.inner.put(key, this.keys.seal(key, data));
  }

  async get(key: string): Promise<Buffer> {
    this.sealedOnly(key);
    return this.keys.unseal(key, await this.inner.get(key));
  }

  async readInto(key: string, target: Uint8Array): Promise<number> {
    this.sealedOnly(key);
    let sealed: Uint8Array;
    if (this.inner.readInto) {
      const room = Buffer.allocUnsafe(target.length + SEAL_OVERHEAD);
      sealed = room.subarray(0, await this.inner.readInto(key, room));
    } else {
      sealed = await this.inner.get(key);
    }
    if (sealed.length > target.length + SEAL_OVERHEAD) throw new Error(`${key} is larger than the space given for it`);
    const plain = this.keys.unseal(key, sealed);
    target.set(plain);
    return plain.length;
  }

  has(key: string): Promise<boolean> {
    return this.inner.has(key);
  }

  async size(key: string): Promise<number> {
    return Math.max(0, (await this.inner.size(key)) - SEAL_OVERHEAD);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }

  list(prefix: string): AsyncIterable<string[]> {
    return this.inner.list(prefix);
  }
}

/** A key slot (keys/<id>.json): the master key wrapped under a passphrase or a recovery key. Kept in the clear. */
export type KeySlot = {
  formatVersion: 1;
  id: string;
  kind: 'passphrase' | 'recovery';
  label?: string;
  createdAt: string;
  /** How the wrapping key comes from the secret: scrypt for a passphrase; HKDF for a recovery key (256 random bits). */
  kdf: { algorithm: 'scrypt'; N: number; r: number; p: number; salt: string } | { algorithm: 'hkdf-sha256'; salt: string };
  /** base64 of nonce (12) | AES-256-GCM of the master key (32) | tag (16); AAD binds the repository and the slot. */
  wrappedKey: string;
};

export function keySlotKey(id: string): string {
  if (!/^k-[0-9a-f]{8}$/.test(id)) throw new Error(`invalid key slot id '${id}'`);
  return `keys/${id}.json`;
}

export function newMasterKey(): Buffer {
  return randomBytes(32);
}

/** A key slot for `secret` (a passphrase, or a recovery key's text), wrapping `master`. */
export async function makeKeySlot(options: { master: Buffer; repositoryId: string; secret: string; kind: KeySlot['kind']; label?: string; scryptCost?: typeof SCRYPT_DEFAULTS }): Promise<KeySlot> {
  const id = `k-${randomBytes(4).toString('hex')}`;
  const salt = randomBytes(16).toString('base64');
  const kdf: KeySlot['kdf'] = options.kind === 'recovery' ? { algorithm: 'hkdf-sha256', salt } : { algorithm: 'scrypt', ...(options.scryptCost ?? SCRYPT_DEFAULTS), salt };
  const wrapping = await wrappingKey(kdf, options.secret);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', wrapping, nonce);
  cipher.setAAD(slotAad(options.repositoryId, id));
  const wrapped = Buffer.concat([nonce, cipher.update(options.master), cipher.final(), cipher.getAuthTag()]);
  return {
    formatVersion: 1, id, kind: options.kind, ...(options.label ? { label: options.label } : {}), createdAt: new Date().toISOString(),
    kdf, wrappedKey: wrapped.toString('base64'),
  };
}

/**
 * The master key, from the first slot the secret opens: a recovery key's text opens recovery slots, anything else
 * is a passphrase. Undefined when none opens.
 */
export async function unlockMasterKey(slots: KeySlot[], secret: string, repositoryId: string): Promise<{ master: Buffer; slot: KeySlot } | undefined> {
  const recovery = parseRecoveryKey(secret) !== undefined;
  for (const slot of slots) {
    if ((slot.kind === 'recovery') !== recovery) continue;
    const wrapped = Buffer.from(slot.wrappedKey, 'base64');
    if (wrapped.length !== NONCE_BYTES + 32 + TAG_BYTES) continue;
    // A slot that cannot be tried (parameters a forged slot got past its check) opens nothing; the next may.
    const wrapping = await wrappingKey(slot.kdf, secret).catch(() => undefined);
    if (!wrapping) continue;
    const decipher = createDecipheriv('aes-256-gcm', wrapping, wrapped.subarray(0, NONCE_BYTES));
    decipher.setAAD(slotAad(repositoryId, slot.id));
    decipher.setAuthTag(wrapped.subarray(NONCE_BYTES + 32));
    try {
      const master = Buffer.concat([decipher.update(wrapped.subarray(NONCE_BYTES, NONCE_BYTES + 32)), decipher.final()]);
      return { master, slot };
    } catch {
      // Not this slot's secret.
    }
  }
  return undefined;
}

/** A key slot as read from the repository, its shape checked (it is not authenticated: a wrong one just opens nothing). */
export function parseKeySlot(value: unknown, key: string): KeySlot {
  const slot = value as Partial<KeySlot> | null;
  const fail = (what: string) => new Error(`${key} is damaged: ${what}`);
  if (!slot || typeof slot !== 'object' || slot.formatVersion !== 1) throw fail('not a key slot of format 1');
  if (typeof slot.id !== 'string' || keySlotKey(slot.id) !== key) throw fail('its id is not its name');
  if (slot.kind !== 'passphrase' && slot.kind !== 'recovery') throw fail('kind');
  if (typeof slot.wrappedKey !== 'string' || typeof slot.createdAt !== 'string') throw fail('wrappedKey or createdAt');
  const kdf = slot.kdf as KeySlot['kdf'] | undefined;
  if (!kdf || typeof kdf.salt !== 'string') throw fail('kdf');
  if (kdf.algorithm === 'scrypt') {
    // Bounds: a hostile slot must not make an unlock allocate gigabytes or run for hours.
    if (![kdf.N, kdf.r, kdf.p].every(Number.isInteger) || kdf.N < 2 || kdf.N > 2 ** 20 || (kdf.N & (kdf.N - 1)) !== 0 || kdf.r < 1 || kdf.r > 32 || kdf.p < 1 || kdf.p > 16
      || 128 * kdf.N * kdf.r > SCRYPT_MAX_MEMORY || kdf.N * kdf.r * kdf.p > SCRYPT_MAX_WORK) throw fail('scrypt parameters out of bounds');
  } else if (kdf.algorithm !== 'hkdf-sha256') {
    throw fail('kdf algorithm');
  }
  if ((slot.kind === 'recovery') !== (kdf.algorithm === 'hkdf-sha256')) throw fail('a recovery slot derives by hkdf-sha256, a passphrase slot by scrypt');
  return slot as KeySlot;
}

async function wrappingKey(kdf: KeySlot['kdf'], secret: string): Promise<Buffer> {
  const salt = Buffer.from(kdf.salt, 'base64');
  if (kdf.algorithm === 'hkdf-sha256') {
    const recovery = parseRecoveryKey(secret);
    if (!recovery) throw new Error('not a recovery key');
    return Buffer.from(hkdfSync('sha256', recovery, salt, 'vmdedup recovery slot v1', 32));
  }
  return scrypt(secret.normalize('NFC'), salt, 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + 16 * 1024 * 1024 });
}

function slotAad(repositoryId: string, slotId: string): Buffer {
  return Buffer.from(`vmdedup key slot v1\0${repositoryId}\0${slotId}`);
}

/**
 * A recovery key as printed: "RK1-" then its 32 bytes as eight groups of 8 hex digits, then a group of 4 that is a
 * checksum (a typo is told as a typo, not as a wrong key).
 */
export function formatRecoveryKey(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  const groups = hex.match(/.{8}/g)!;
  return ['RK1', ...groups, recoveryChecksum(bytes)].join('-');
}

export function newRecoveryKey(): string {
  return formatRecoveryKey(randomBytes(32));
}

/** The 32 bytes of a recovery key's text (spaces and case ignored); undefined when it is not one; an error for a typo. */
export function parseRecoveryKey(text: string): Buffer | undefined {
  const compact = text.replace(/\s+/g, '').toLowerCase();
  if (!compact.startsWith('rk1-')) return undefined;
  const match = /^rk1((?:-[0-9a-f]{8}){8})-([0-9a-f]{4})$/.exec(compact);
  if (!match) throw new Error('that recovery key is malformed: it is RK1- and nine groups of hex digits, as printed');
  const bytes = Buffer.from(match[1].replace(/-/g, ''), 'hex');
  const expected = Buffer.from(recoveryChecksum(bytes));
  if (!timingSafeEqual(expected, Buffer.from(match[2]))) throw new Error('that recovery key has a typo (its last group, a checksum, does not match)');
  return bytes;
}

function recoveryChecksum(bytes: Buffer): string {
  return createHash('sha256').update('vmdedup recovery key v1').update(bytes).digest('hex').slice(0, 4);
}

/** Key slots of a store (keys/), each checked for shape; a damaged one is skipped with its error told. */
export async function readKeySlots(store: BlobStore): Promise<{ slots: KeySlot[]; damaged: string[] }> {
  const slots: KeySlot[] = [];
  const damaged: string[] = [];
  for await (const page of store.list('keys/')) {
    for (const key of page.sort()) {
      if (!/^keys\/k-[0-9a-f]{8}\.json$/.test(key)) continue;
      try {
        slots.push(parseKeySlot(JSON.parse((await store.get(key)).toString('utf8')), key));
      } catch (err) {
        if (err instanceof BlobNotFoundError) continue; // removed meanwhile
        if (err instanceof SyntaxError) damaged.push(`${key} is damaged: not JSON`);
        else if ((err as { code?: unknown }).code) throw err; // a failure of the storage
        else damaged.push((err as Error).message);
      }
    }
  }
  return { slots: slots.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id)), damaged };
}
