import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers';
import { blobStoreConformance } from './blob-store.conformance';
import { CachedBlobStore } from './cached-blob-store';
import { FsBlobStore } from './fs-blob-store';

blobStoreConformance('CachedBlobStore over FsBlobStore', async () => new CachedBlobStore(new FsBlobStore(await tempDir()), await tempDir()));

/** An FsBlobStore that counts its gets by key. */
async function countingStore() {
  const store = new FsBlobStore(await tempDir());
  const gets = new Map<string, number>();
  const get = store.get.bind(store);
  store.get = async (key: string) => {
    gets.set(key, (gets.get(key) ?? 0) + 1);
    return get(key);
  };
  return { store, gets };
}

describe('CachedBlobStore', () => {
  const pack = 'images/20261204T120000Z-abcdef.3.pack';

  it('fetches an image pack once, per repository id; every other blob and every existence question goes to the store', async () => {
    const { store, gets } = await countingStore();
    const dir = await tempDir();
    await store.put('config.json', Buffer.from(JSON.stringify({ id: 'repo-1' })));
    await store.put(pack, Buffer.from('pack bytes'));
    await store.put('disks/' + 'a'.repeat(64) + '.json', Buffer.from('{}'));
    const cached = new CachedBlobStore(store, dir);
    for (let i = 0; i < 3; i++) expect((await cached.get(pack)).toString()).toBe('pack bytes');
    expect(gets.get(pack)).toBe(1);
    for (let i = 0; i < 2; i++) await cached.get('disks/' + 'a'.repeat(64) + '.json');
    expect(gets.get('disks/' + 'a'.repeat(64) + '.json')).toBe(2);
    // Another process (a new instance) reads the local copy.
    expect((await new CachedBlobStore(store, dir).get(pack)).toString()).toBe('pack bytes');
    expect(gets.get(pack)).toBe(1);
    // A new repository at the same place with a pack of the same name is another repository's: fetched again.
    await store.put('config.json', Buffer.from(JSON.stringify({ id: 'repo-2' })));
    await store.put(pack, Buffer.from('other bytes'));
    expect((await new CachedBlobStore(store, dir).get(pack)).toString()).toBe('other bytes');
  });

  it('a pack removed from the store is absent, and a local copy damaged on disk is fetched again', async () => {
    const { store, gets } = await countingStore();
    const dir = await tempDir();
    await store.put('config.json', Buffer.from(JSON.stringify({ id: 'repo-1' })));
    await store.put(pack, Buffer.from('pack bytes'));
    const cached = new CachedBlobStore(store, dir);
    await cached.get(pack);
    const file = path.join(dir, 'repo-1', 'images', path.basename(pack));
    const kept = await fs.readFile(file);
    kept[kept.length - 1] ^= 1;
    await fs.writeFile(file, kept);
    expect((await cached.get(pack)).toString()).toBe('pack bytes');
    expect(gets.get(pack)).toBe(2);
    await store.delete(pack); // another host prunes it
    expect(await cached.has(pack)).toBe(false);
    await cached.delete(pack);
    await expect(fs.access(file)).rejects.toThrow();
  });
});
