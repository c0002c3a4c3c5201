import zstd from 'zstd-napi/binding.js';
import { RepositoryError } from '../errors';

/**
 * Image packs (README.md, "Image packs"): the backup images of one batch of a run stored as one blob,
 * `images/<pack id>.<count>.pack`, a zstd frame of `{ formatVersion, id, images: [...] }`. Member i is the image
 * `<pack id>-<i, 4 digits or more>`. A pack is never rewritten: a member pruned on its own is marked
 * `images/<image id>.gone`, and the pack goes when its last member does. One pack is one fsync where a pool's
 * batch of 256 images was 256, and compresses what the images of a pool repeat (256 images of the benchmark's pool:
 * 1.24 MB as files, 31 KB as a pack).
 */

/** A pack id has the form of a single image's id: the time of its first image, then 6 random hex digits. */
const PACK_ID = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;
const PACKED_ID = /^(\d{8}T\d{6}Z-[0-9a-f]{6})-(\d{4,9})$/;
const PACK_KEY = /^images\/(\d{8}T\d{6}Z-[0-9a-f]{6})\.(\d{1,9})\.pack$/;
const GONE_KEY = /^images\/(\d{8}T\d{6}Z-[0-9a-f]{6}-\d{4,9})\.gone$/;
/** A pack decodes to at most this per image, and this in all (256 images of a pool are about 1.3 MB; an image is a
 *  few KB, its VM's config included, and at most its 4 MiB config in base64 and its disks): a hostile frame header
 *  cannot make a reader allocate more. Backups end a batch well before (IMAGE_BATCH_BYTES). */
const MAX_IMAGE_BYTES = 16 * 1024 * 1024;
const MAX_PACK_BYTES = 256 * 1024 * 1024;
/** The most members a pack holds (a backup's batch is 256): a name that says more is no pack, so a hostile or damaged
 *  name cannot make a listing enumerate a billion ids. Every member's index then has the 4 digits of its id. */
export const MAX_PACK_IMAGES = 10_000;
const PACK_ZSTD_LEVEL = 3;
const decodedLimit = (count: number) => Math.min(MAX_PACK_BYTES, Math.max(1, count) * MAX_IMAGE_BYTES);

export type PackedImageId = { packId: string; index: number };

export function packedImageId(packId: string, index: number): string {
  if (!PACK_ID.test(packId) || !Number.isSafeInteger(index) || index < 0) throw new RepositoryError(`invalid image pack id '${packId}' or index ${index}`);
  return `${packId}-${String(index).padStart(4, '0')}`;
}

/** The ids of a pack's members, in order. */
export function packMemberIds(packId: string, count: number): string[] {
  return Array.from({ length: count }, (_, index) => packedImageId(packId, index));
}

/** The pack and position an image id names, or undefined for the id of an image stored on its own (images/<id>.json). */
export function parsePackedImageId(id: string): PackedImageId | undefined {
  const match = PACKED_ID.exec(id);
  if (!match) return undefined;
  const index = Number(match[2]);
  // One spelling per image: the 4-digit padding, no extra leading zeros.
  return packedImageId(match[1], index) === id ? { packId: match[1], index } : undefined;
}

/** The blob of images/ that holds an image (what reconcile compares): its pack's id, or the id of an image stored alone. */
export function imageBlobOf(id: string): string {
  return parsePackedImageId(id)?.packId ?? id;
}

/** The pack these images are when they are all of it, members 0…n-1 in order (a backup's batch, written as one pack). */
export function wholePackOf(ids: string[]): string | undefined {
  const packed = ids.map(parsePackedImageId);
  const packId = packed[0]?.packId;
  return packId && packed.every((p, index) => p?.packId === packId && p.index === index) ? packId : undefined;
}

export function imagePackKey(packId: string, count: number): string {
  return `images/${packId}.${count}.pack`;
}

export function goneImageKey(id: string): string {
  if (!parsePackedImageId(id)) throw new RepositoryError(`invalid packed image id '${id}'`);
  return `images/${id}.gone`;
}

/** What a key under images/ is: a pack (its id and member count), a pruned member's mark, or neither. */
export function parseImagesKey(key: string): { pack: { packId: string; count: number } } | { gone: string } | undefined {
  const pack = PACK_KEY.exec(key);
  if (pack) {
    const count = Number(pack[2]);
    return count > 0 && count <= MAX_PACK_IMAGES && imagePackKey(pack[1], count) === key ? { pack: { packId: pack[1], count } } : undefined;
  }
  const gone = GONE_KEY.exec(key);
  return gone && parsePackedImageId(gone[1]) ? { gone: gone[1] } : undefined;
}

export function encodeImagePack(packId: string, images: { id: string }[], formatVersion: number): Buffer {
  if (images.length > MAX_PACK_IMAGES) throw new RepositoryError(`a pack holds no more than ${MAX_PACK_IMAGES} images (${images.length} given)`);
  images.forEach((image, index) => {
    if (image.id !== packedImageId(packId, index)) throw new RepositoryError(`image ${image.id} is not member ${index} of pack ${packId}`);
  });
  const plain = Buffer.from(JSON.stringify({ formatVersion, id: packId, images }));
  if (plain.length > decodedLimit(images.length)) throw new RepositoryError(`the images of pack ${packId} are too large (${plain.length} bytes; at most ${MAX_IMAGE_BYTES} an image)`);
  const out = Buffer.alloc(zstd.compressBound(plain.length));
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, PACK_ZSTD_LEVEL);
  return out.subarray(0, cctx.compress2(out, plain));
}

/**
 * A pack's members, as untrusted JSON values (each is checked on its own when read, so one damaged member does not
 * hide the others). Refused as damaged when it does not decode, is not this pack or holds another count.
 */
export function decodeImagePack(bytes: Uint8Array, packId: string, count: number, what: string, knownFormat: number): unknown[] {
  const damaged = (why: string) => new RepositoryError(`${what} is damaged: ${why}`);
  let size: number | null;
  try {
    size = zstd.getFrameContentSize(bytes);
  } catch {
    throw damaged('not a zstd frame');
  }
  const limit = decodedLimit(count);
  if (size === null || size > limit) throw damaged(`its decoded size is ${size === null ? 'not recorded' : `over ${limit} bytes`}`);
  const plain = Buffer.alloc(size);
  try {
    if (new zstd.DCtx().decompress(plain, bytes) !== size) throw new Error('short');
  } catch {
    throw damaged('it does not decode');
  }
  let pack: { formatVersion?: unknown; id?: unknown; images?: unknown };
  try {
    pack = JSON.parse(plain.toString('utf8'));
  } catch {
    throw damaged('not JSON');
  }
  if (typeof pack !== 'object' || pack === null) throw damaged('not an image pack');
  if (typeof pack.formatVersion === 'number' && pack.formatVersion > knownFormat) throw new RepositoryError(`${what} has a newer format (${pack.formatVersion})`);
  if (pack.id !== packId) throw damaged(`it holds pack ${JSON.stringify(pack.id)}`);
  if (!Array.isArray(pack.images) || pack.images.length !== count) throw damaged(`it holds ${Array.isArray(pack.images) ? pack.images.length : 'no'} images, its name says ${count}`);
  return pack.images;
}
