import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bareImage as image, bareImagePack as pack, seededRandom, tempDir } from '../../../test/helpers';
import { FsBlobStore } from './fs-blob-store';
import { encodeImagePack, packedImageId, parsePackedImageId } from './image-pack';
import { type BackupImageManifest, MANIFEST_FORMAT_VERSION } from './manifests';
import { PACK_FORMAT_VERSION, PLAIN_FORMAT_VERSION, Repository, newBackupImageId } from './repository';

async function newRepo() {
  const dir = await tempDir('vmdedup-pack-');
  return { dir, repo: await Repository.openOrInit(new FsBlobStore(dir)) };
}

const keysUnder = async (dir: string) => (await fs.readdir(path.join(dir, 'images'))).filter((name) => name !== '.tmp').sort();

describe('image packs', () => {
  it('writes a batch as one blob, lists and reads its members, and upgrades the repository format', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(3);
    await repo.putBackupImages(images);
    expect(await keysUnder(dir)).toEqual([`${parsePackedImageId(images[0].id)!.packId}.3.pack`]);
    expect(await repo.backupImageIds()).toEqual(images.map((i) => i.id));
    // Another process (a fresh Repository) finds the pack by its listing.
    const reopened = await Repository.open(new FsBlobStore(dir));
    for (const expected of images) expect(await reopened.getBackupImage(expected.id)).toEqual(expected);
    expect(reopened.config.formatVersion).toBe(PLAIN_FORMAT_VERSION);
    expect(await reopened.hasBackupImage(packedImageId(parsePackedImageId(images[0].id)!.packId, 3))).toBe(false);
  });

  it('a member pruned alone is marked gone; the pack goes with its last member, and frees its bytes only then', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(3);
    await repo.putBackupImages(images);
    const [a, b, c] = images.map((i) => i.id);
    expect(await repo.backupImageBytes([a])).toBe(0);
    await repo.removeBackupImages([b]);
    expect(await repo.backupImageIds()).toEqual([a, c]);
    expect(await repo.hasBackupImage(b)).toBe(false);
    await expect(repo.getBackupImage(b)).rejects.toThrow(/is missing/);
    expect((await repo.getBackupImage(c)).vm.name).toBe('vm2');
    const packFile = (await keysUnder(dir)).find((name) => name.endsWith('.pack'))!;
    expect(await repo.backupImageBytes([a, c])).toBe((await fs.stat(path.join(dir, 'images', packFile))).size);
    await repo.removeBackupImages([a, c, b]);
    expect(await keysUnder(dir)).toEqual([]);
    expect(await repo.backupImageIds()).toEqual([]);
  });

  it('reads and removes images stored one per file beside packs', async () => {
    const { dir, repo } = await newRepo();
    const single = image(newBackupImageId(new Date()), 'old');
    await repo.putBackupImages([single]);
    const images = pack(2);
    await repo.putBackupImages(images);
    expect(await repo.backupImageIds()).toEqual([single.id, ...images.map((i) => i.id)].sort());
    expect(await repo.getBackupImage(single.id)).toEqual(single);
    expect(await repo.backupImageBytes([single.id])).toBe((await fs.stat(path.join(dir, 'images', `${single.id}.json`))).size);
    await repo.removeBackupImages([single.id, images[0].id]);
    expect(await repo.backupImageIds()).toEqual([images[1].id]);
  });

  it('refuses to write members that are not one pack in order', async () => {
    const { repo } = await newRepo();
    const images = pack(3);
    await expect(repo.putBackupImages([images[0], images[2]])).rejects.toThrow(/not member 1/);
    await expect(repo.putBackupImages([image(newBackupImageId(new Date()), 'x'), images[0]])).rejects.toThrow(/is packed/);
    expect(await repo.backupImageIds()).toEqual([]);
  });

  it('a damaged pack is refused with one line, and a damaged member does not hide the others', async () => {
    const { dir, repo } = await newRepo();
    const images = pack(2);
    await repo.putBackupImages(images);
    const file = path.join(dir, 'images', (await keysUnder(dir))[0]);
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 3] ^= 0xff;
    await fs.writeFile(file, bytes);
    const reopened = await Repository.open(new FsBlobStore(dir));
    await expect(reopened.getBackupImage(images[0].id)).rejects.toThrow(/image pack .* is damaged/);
    // A pack whose name says another count than it holds.
    await fs.rm(file);
    const packId = parsePackedImageId(images[0].id)!.packId;
    await fs.writeFile(path.join(dir, 'images', `${packId}.3.pack`), encodeImagePack(packId, images, PACK_FORMAT_VERSION));
    await expect((await Repository.open(new FsBlobStore(dir))).getBackupImage(images[0].id)).rejects.toThrow(/holds 2 images, its name says 3/);
    // One member of the wrong shape: that one is refused, the other read.
    await fs.rm(path.join(dir, 'images', `${packId}.3.pack`));
    const broken = [{ ...images[0], disks: 'none' } as unknown as BackupImageManifest, images[1]];
    await fs.writeFile(path.join(dir, 'images', `${packId}.2.pack`), encodeImagePack(packId, broken, PACK_FORMAT_VERSION));
    const third = await Repository.open(new FsBlobStore(dir));
    await expect(third.getBackupImage(images[0].id)).rejects.toThrow(/is damaged/);
    expect(await third.getBackupImage(images[1].id)).toEqual(images[1]);
  });

  it('an image read from a pack is the reader\'s own copy', async () => {
    const { repo } = await newRepo();
    const images = pack(1);
    await repo.putBackupImages(images);
    (await repo.getBackupImage(images[0].id)).vm.name = 'changed';
    expect((await repo.getBackupImage(images[0].id)).vm.name).toBe('vm0');
  });

  it('one spelling per packed id: other paddings are not packed ids', () => {
    const packId = newBackupImageId(new Date());
    expect(parsePackedImageId(packId)).toBeUndefined();
    expect(parsePackedImageId(`${packId}-0007`)).toEqual({ packId, index: 7 });
    expect(parsePackedImageId(`${packId}-00007`)).toBeUndefined();
    expect(parsePackedImageId(`${packId}-12345`)).toEqual({ packId, index: 12345 });
  });

  it('listing and reads match a model under random writes and removals (seeded)', async () => {
    for (const seed of [1, 2, 3]) {
      const random = seededRandom(seed);
      const { dir, repo } = await newRepo();
      const model = new Map<string, BackupImageManifest>();
      const at = new Date('2026-12-01T00:00:00Z');
      for (let step = 0; step < 40; step++) {
        const choice = random();
        if (choice < 0.45 || model.size === 0) {
          at.setSeconds(at.getSeconds() + 1);
          const images = random() < 0.2 ? [image(newBackupImageId(at), `single${step}`)] : pack(1 + Math.floor(random() * 6), at);
          await repo.putBackupImages(images);
          for (const i of images) model.set(i.id, i);
        } else {
          const ids = [...model.keys()].filter(() => random() < 0.3);
          // Some ids already gone or never written: removal is idempotent.
          await repo.removeBackupImages([...ids, ...(random() < 0.3 ? [packedImageId(newBackupImageId(at), 0)] : [])]);
          for (const id of ids) model.delete(id);
        }
        const fresh = random() < 0.5 ? await Repository.open(new FsBlobStore(dir)) : repo;
        expect(await fresh.backupImageIds(), `seed ${seed} step ${step}`).toEqual([...model.keys()].sort());
        for (const [id, expected] of model) if (random() < 0.3) expect(await fresh.getBackupImage(id)).toEqual(expected);
      }
      await repo.removeBackupImages([...model.keys()]);
      expect(await keysUnder(dir), `seed ${seed}: nothing left`).toEqual([]);
    }
  });
});
