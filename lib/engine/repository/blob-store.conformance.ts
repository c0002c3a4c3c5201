/** The one conformance suite every BlobStore implementation must pass (restic's backend/test idea). */
import { describe, expect, it } from 'vitest';
import { type BlobStore, BlobNotFoundError } from './blob-store';

export function blobStoreConformance(name: string, makeStore: () => Promise<BlobStore>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    it('puts, gets, has and deletes', async () => {
      const store = await makeStore();
      expect(await store.has('a/b/c')).toBe(false);
      await store.put('a/b/c', Buffer.from('hello'));
      expect(await store.has('a/b/c')).toBe(true);
      expect((await store.get('a/b/c')).toString()).toBe('hello');
      await store.delete('a/b/c');
      expect(await store.has('a/b/c')).toBe(false);
      await store.delete('a/b/c'); // deleting a missing key is fine
    });

    it('treats putting an existing key as success and keeps a whole blob', async () => {
      const store = await makeStore();
      await store.put('k', Buffer.from('one'));
      await store.put('k', Buffer.from('one'));
      expect((await store.get('k')).toString()).toBe('one');
    });

    it('throws BlobNotFoundError for a missing key', async () => {
      const store = await makeStore();
      await expect(store.get('missing/key')).rejects.toBeInstanceOf(BlobNotFoundError);
    });

    it('lists keys under a prefix only', async () => {
      const store = await makeStore();
      await store.put('chunks/aa/1', Buffer.of(1));
      await store.put('chunks/bb/2', Buffer.of(2));
      await store.put('images/x.json', Buffer.of(3));
      const keys: string[] = [];
      for await (const key of store.list('chunks/')) keys.push(key);
      expect(keys.sort()).toEqual(['chunks/aa/1', 'chunks/bb/2']);
      const none: string[] = [];
      for await (const key of store.list('nothing/')) none.push(key);
      expect(none).toEqual([]);
    });

    it('rejects keys that could escape the store', async () => {
      const store = await makeStore();
      await expect(store.put('../evil', Buffer.of(1))).rejects.toThrow(/invalid blob key/);
      await expect(store.get('/abs')).rejects.toThrow(/invalid blob key/);
    });

    it('reads into a caller buffer where supported, and refuses a buffer too small', async () => {
      const store = await makeStore();
      if (!store.readInto) return;
      await store.put('r', Buffer.from('hello world'));
      const target = new Uint8Array(32);
      expect(await store.readInto('r', target)).toBe(11);
      expect(Buffer.from(target.subarray(0, 11)).toString()).toBe('hello world');
      await expect(store.readInto('r', new Uint8Array(5))).rejects.toThrow(/larger/);
      await expect(store.readInto('missing', target)).rejects.toBeInstanceOf(BlobNotFoundError);
    });

    it('stores large blobs byte for byte', async () => {
      const store = await makeStore();
      const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0xab);
      await store.put('big', big);
      expect((await store.get('big')).equals(big)).toBe(true);
    });
  });
}
