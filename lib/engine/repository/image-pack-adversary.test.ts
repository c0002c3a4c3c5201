import fs from 'node:fs/promises';
import path from 'node:path';
import zstd from 'zstd-napi';
import { describe, expect, it } from 'vitest';
import { bareImagePack as pack, tempDir } from '../../../test/helpers';
import type { BlobStore } from './blob-store';
import { FsBlobStore } from './fs-blob-store';
import { encodeImagePack, packedImageId, parsePackedImageId } from './image-pack';
import { type BackupImageManifest, MANIFEST_FORMAT_VERSION } from './manifests';
import { PACK_FORMAT_VERSION, Repository, newBackupImageId } from './repository';

async function newRepo() {
  const dir = await tempDir('vmdedup-pack-adv-');
  return { dir, repo: await Repository.openOrInit(new FsBlobStore(dir)) };
}

const packIdOf = (images: BackupImageManifest[]) => parsePackedImageId(images[0].id)!.packId;
const reopen = (dir: string) => Repository.open(new FsBlobStore(dir));

/** A store that counts its listings of a prefix. */
function countingLists(store: BlobStore, prefix: string): { store: BlobStore; lists: () => number } {
  let lists = 0;
  const counted = new Proxy(store, {
    get(target, name, receiver) {
      if (name === 'list') return (p: string) => { if (p === prefix) lists++; return target.list(p); };
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store: counted, lists: () => lists };
}

describe('image packs, adversarial', () => {
  it('a name declaring a huge member count is not taken at its word: the listing stays small and fast', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(2);
    await repo.putBackupImages(images);
    const hostile = newBackupImageId(new Date());
    await fs.writeFile(path.join(dir, 'images', `${hostile}.999999999.pack`), encodeImagePack(hostile, [], PACK_FORMAT_VERSION));
    const started = Date.now();
    const ids = await (await reopen(dir)).backupImageIds();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(ids).toEqual(images.map((i) => i.id));
    expect(await (await reopen(dir)).hasBackupImage(packedImageId(hostile, 5))).toBe(false);
  }, 20_000);

  it('a small pack that would decode to far more than its members can hold is refused before it is decoded', async () => {
    const { dir } = await newRepo();
    const packId = newBackupImageId(new Date());
    // 40 MiB of JSON (a member padded with spaces) compresses to a few KB: one member may decode to 16 MiB at most.
    const bomb = zstd.compress(Buffer.from(`{"formatVersion":3,"id":"${packId}","images":[${' '.repeat(40 * 1024 * 1024)}{}]}`));
    expect(bomb.length).toBeLessThan(64 * 1024);
    await fs.mkdir(path.join(dir, 'images'), { recursive: true });
    await fs.writeFile(path.join(dir, 'images', `${packId}.1.pack`), bomb);
    await expect((await reopen(dir)).getBackupImage(packedImageId(packId, 0))).rejects.toThrow(/decoded size is over 16777216 bytes/);
  });

  it('a pack of more members than a pack may hold is refused on write', async () => {
    const { repo } = await newRepo();
    await expect(repo.putBackupImages(pack(10_001))).rejects.toThrow(/more than 10000/);
    expect(await repo.backupImageIds()).toEqual([]);
  });

  it('hostile frames: a huge declared size, a truncated pack, a bare header: one clean error, no crash', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(2);
    await repo.putBackupImages(images);
    const file = path.join(dir, 'images', `${packIdOf(images)}.2.pack`);
    const good = await fs.readFile(file);
    const cases: [string, Buffer][] = [
      // A frame that records 2^40 bytes of content (an RLE block of zeros).
      ['declared 1 TiB', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00])],
      ['truncated', good.subarray(0, Math.floor(good.length / 2))],
      ['four bytes', good.subarray(0, 4)],
      ['empty', Buffer.alloc(0)],
      ['not zstd', Buffer.from('{"formatVersion":3}')],
      ['json of a list', zstd.compress(Buffer.from('[1,2]'))],
      ['null', zstd.compress(Buffer.from('null'))],
    ];
    for (const [what, bytes] of cases) {
      await fs.writeFile(file, bytes);
      const fresh = await reopen(dir);
      const error = await fresh.getBackupImage(images[0].id).then(() => undefined, (err: Error) => err);
      expect(error?.name, what).toBe('RepositoryError');
      expect(error!.message.split('\n'), what).toHaveLength(1);
      expect(await fresh.hasBackupImage(images[0].id), what).toBe(true);
    }
  });

  it('a member holding the manifest of another pack\'s image is refused', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(2);
    const other = pack(1);
    await repo.putBackupImages(other);
    const packId = packIdOf(images);
    const plain = Buffer.from(JSON.stringify({ formatVersion: 3, id: packId, images: [other[0], images[1]] }));
    await fs.writeFile(path.join(dir, 'images', `${packId}.2.pack`), zstd.compress(plain));
    const fresh = await reopen(dir);
    await expect(fresh.getBackupImage(images[0].id)).rejects.toThrow(/is damaged: it holds the manifest of/);
    expect(await fresh.getBackupImage(images[1].id)).toEqual(images[1]);
    expect(await fresh.getBackupImage(other[0].id)).toEqual(other[0]);
  });

  it('stray names are ignored: marks beyond the count, count 0, x.pack, nested folders, a .json named like a packed id', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(2);
    await repo.putBackupImages(images);
    const packId = packIdOf(images);
    const imagesDir = path.join(dir, 'images');
    await fs.writeFile(path.join(imagesDir, `${packedImageId(packId, 2)}.gone`), '');
    await fs.writeFile(path.join(imagesDir, `${packedImageId(packId, 9999)}.gone`), '');
    await fs.writeFile(path.join(imagesDir, `${packId}.0.pack`), '');
    await fs.writeFile(path.join(imagesDir, `${packId}.02.pack`), '');
    await fs.writeFile(path.join(imagesDir, 'x.pack'), '');
    await fs.writeFile(path.join(imagesDir, `${packedImageId(packId, 1)}.json`), JSON.stringify(images[1]));
    await fs.mkdir(path.join(imagesDir, 'nested'));
    await fs.writeFile(path.join(imagesDir, 'nested', `${packId}.5.pack`), '');
    await fs.writeFile(path.join(imagesDir, 'nested', `${newBackupImageId(new Date())}.json`), '{}');
    const fresh = await reopen(dir);
    // Each id once: a file no version writes does not make an id appear twice (or one that cannot be read).
    expect(await fresh.backupImageIds()).toEqual(images.map((i) => i.id));
    for (const i of images) expect(await fresh.getBackupImage(i.id)).toEqual(i);
    await fresh.removeBackupImages(images.map((i) => i.id));
    expect(await fresh.backupImageIds()).toEqual([]);
  });

  it('another process\'s pack written after this one listed is found (listed again on a miss)', async () => {
    const { dir, repo } = await newRepo();
    const first = pack(1);
    await repo.putBackupImages(first);
    const reader = await reopen(dir);
    expect(await reader.backupImageIds()).toEqual([first[0].id]);
    expect(await reader.getBackupImage(first[0].id)).toEqual(first[0]);
    const later = pack(3);
    await (await reopen(dir)).putBackupImages(later);
    expect(await reader.getBackupImage(later[2].id)).toEqual(later[2]);
    const third = pack(2);
    await (await reopen(dir)).putBackupImages(third);
    expect(await reader.hasBackupImage(third[1].id)).toBe(true);
    expect(await reader.hasBackupImage(packedImageId(packIdOf(third), 2))).toBe(false);
  });

  it('a pack another process removes whole is no longer held for this one, though it read it before', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(2);
    await repo.putBackupImages(images);
    const reader = await reopen(dir);
    expect(await reader.getBackupImage(images[0].id)).toEqual(images[0]);
    expect(await reader.hasBackupImage(images[1].id)).toBe(true);
    await (await reopen(dir)).removeBackupImages([images[1].id]);
    expect(await reader.hasBackupImage(images[1].id)).toBe(false);
    await expect(reader.getBackupImage(images[1].id)).rejects.toThrow(/is missing/);
    await (await reopen(dir)).removeBackupImages([images[0].id]);
    expect(await reader.hasBackupImage(images[0].id)).toBe(false);
    expect(await reader.backupImageIds()).toEqual([]);
  });

  it('hasBackupImage of a pack it knows asks the store for that pack, not for a listing of images/ each time', async () => {
    const dir = await tempDir('vmdedup-pack-adv-');
    await Repository.openOrInit(new FsBlobStore(dir));
    const counting = countingLists(new FsBlobStore(dir), 'images/');
    const repo = await Repository.open(counting.store);
    const images = pack(50);
    await repo.putBackupImages(images);
    await repo.backupImageIds();
    const before = counting.lists();
    for (const i of images) expect(await repo.hasBackupImage(i.id)).toBe(true);
    expect(counting.lists() - before).toBeLessThanOrEqual(1);
  });

  it('removal: duplicates, ids of packs not listed, a member twice in one call, and a kill between the pack and its marks', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(3);
    await repo.putBackupImages(images);
    const [a, b, c] = images.map((i) => i.id);
    const nowhere = packedImageId(newBackupImageId(new Date()), 0);
    await repo.removeBackupImages([a, a, nowhere, packedImageId(packIdOf(images), 7)]);
    expect(await repo.backupImageIds()).toEqual([b, c]);
    expect(await repo.backupImageBytes([b, b, nowhere])).toBe(0);
    // A kill after the pack went but before its marks: the marks name nothing.
    await fs.rm(path.join(dir, 'images', `${packIdOf(images)}.3.pack`));
    const fresh = await reopen(dir);
    expect(await fresh.backupImageIds()).toEqual([]);
    await fresh.removeBackupImages([b, c]);
    const next = pack(2);
    await fresh.putBackupImages(next);
    expect(await fresh.backupImageIds()).toEqual(next.map((i) => i.id));
  });
});
