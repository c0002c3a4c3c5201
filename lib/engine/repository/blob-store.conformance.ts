/** The one conformance suite every BlobStore implementation must pass (restic's backend/test idea). */
import { describe, expect, it } from 'vitest';
import { type BlobStore, BlobNotFoundError } from './blob-store';
import type { Fault, FaultCode } from './faulty-blob-store';

export function blobStoreConformance(name: string, makeStore: () => Promise<BlobStore>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    it('puts, gets and has', async () => {
      const store = await makeStore();
      expect(await store.has('a/b/c')).toBe(false);
      await store.put('a/b/c', Buffer.from('hello'));
      expect(await store.has('a/b/c')).toBe(true);
      expect((await store.get('a/b/c')).toString()).toBe('hello');
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
      for await (const page of store.list('chunks/')) keys.push(...page);
      expect(keys.sort()).toEqual(['chunks/aa/1', 'chunks/bb/2']);
      const none: string[] = [];
      for await (const page of store.list('nothing/')) none.push(...page);
      expect(none).toEqual([]);
    });

    it('tells a blob\'s size, and deletes it (an absent key too) so that nothing sees it after', async () => {
      const store = await makeStore();
      await store.put('chunks/aa/1', Buffer.from('12345'));
      await store.put('chunks/aa/2', Buffer.from('6'));
      expect(await store.size('chunks/aa/1')).toBe(5);
      await expect(store.size('chunks/aa/none')).rejects.toBeInstanceOf(BlobNotFoundError);
      await store.delete('chunks/aa/1');
      await store.delete('chunks/aa/1');
      await store.delete('nothing/here');
      expect(await store.has('chunks/aa/1')).toBe(false);
      await expect(store.get('chunks/aa/1')).rejects.toBeInstanceOf(BlobNotFoundError);
      await store.flush?.();
      const keys: string[] = [];
      for await (const page of store.list('chunks/')) keys.push(...page);
      expect(keys).toEqual(['chunks/aa/2']);
      // Put again after a delete: whole again.
      await store.put('chunks/aa/1', Buffer.from('12345'));
      expect((await store.get('chunks/aa/1')).toString()).toBe('12345');
      await expect(store.delete('../evil')).rejects.toThrow(/invalid blob key/);
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

    it('flushes, where it has a durability barrier, keeping every blob put before', async () => {
      const store = await makeStore();
      await store.flush?.();
      await Promise.all(['chunks/aa/1', 'chunks/ab/2', 'disks/d.json'].map((key) => store.put(key, Buffer.from(key))));
      await store.flush?.();
      await store.flush?.(); // nothing new: still fine
      for (const key of ['chunks/aa/1', 'chunks/ab/2', 'disks/d.json']) expect((await store.get(key)).toString()).toBe(key);
    });
  });
}

/** A store under test with faults, and what it left beside its blobs (temp files) that a reader might trip on. */
export type FaultyStoreUnderTest = { store: BlobStore; leftovers: () => Promise<string[]> };

/**
 * What every store must still guarantee when its storage fails (run through FaultyBlobStore or a backend's own
 * fault hooks): a failed put leaves no blob visible (or, when the failure came after the write, the whole blob)
 * and no temp file; a read that fails rejects with the storage's error rather than answering "absent".
 */
export function blobStoreFaultConformance(name: string, makeStore: (faults: Fault[]) => Promise<FaultyStoreUnderTest>): void {
  describe(`BlobStore conformance under faults: ${name}`, () => {
    const codes: FaultCode[] = ['ENOSPC', 'EIO', 'EROFS'];
    for (const code of codes) {
      it(`a put failing with ${code} leaves no blob and no temp file, and a retry stores it whole`, async () => {
        const { store, leftovers } = await makeStore([{ op: 'put', call: 2, error: code }]);
        const data = Buffer.alloc(200_000, 7);
        await store.put('chunks/aa/first', Buffer.from('kept'));
        await expect(store.put('chunks/bb/second', data)).rejects.toMatchObject({ code });
        expect(await store.has('chunks/bb/second')).toBe(false);
        await expect(store.get('chunks/bb/second')).rejects.toBeInstanceOf(BlobNotFoundError);
        const keys: string[] = [];
        for await (const page of store.list('chunks/')) keys.push(...page);
        expect(keys).toEqual(['chunks/aa/first']);
        expect(await leftovers()).toEqual([]);
        await store.put('chunks/bb/second', data);
        expect((await store.get('chunks/bb/second')).equals(data)).toBe(true);
        expect((await store.get('chunks/aa/first')).toString()).toBe('kept');
      });
    }

    it('a put whose acknowledgement is lost leaves the whole blob or none, never part of it', async () => {
      const { store, leftovers } = await makeStore([{ op: 'put', error: 'EIO', after: true }]);
      const data = Buffer.alloc(300_000, 9);
      await expect(store.put('k', data)).rejects.toMatchObject({ code: 'EIO' });
      if (await store.has('k')) expect((await store.get('k')).equals(data)).toBe(true);
      expect(await leftovers()).toEqual([]);
    });

    it('a full disk stays full: every later put fails, what was stored stays readable', async () => {
      const { store, leftovers } = await makeStore([{ op: 'put', call: 3, error: 'ENOSPC', persistent: true }]);
      await store.put('a', Buffer.from('a'));
      await store.put('b', Buffer.from('b'));
      for (const key of ['c', 'd', 'e']) await expect(store.put(key, Buffer.from(key))).rejects.toMatchObject({ code: 'ENOSPC' });
      expect((await store.get('a')).toString()).toBe('a');
      expect(await store.has('c')).toBe(false);
      expect(await leftovers()).toEqual([]);
    });

    it('a failing read rejects with its error (has does not answer "absent")', async () => {
      const { store } = await makeStore([{ op: 'has', error: 'EIO' }, { op: 'get', error: 'EIO' }]);
      await store.put('k', Buffer.from('v'));
      await expect(store.has('k')).rejects.toMatchObject({ code: 'EIO' });
      await expect(store.get('k')).rejects.toMatchObject({ code: 'EIO' });
      expect(await store.has('k')).toBe(true);
      expect((await store.get('k')).toString()).toBe('v');
    });

    it('a failing flush rejects, and the next flush succeeds', async () => {
      const { store } = await makeStore([{ op: 'flush', error: 'EIO' }]);
      await store.put('k', Buffer.from('v'));
      if (!store.flush) return;
      await expect(store.flush()).rejects.toMatchObject({ code: 'EIO' });
      await store.flush();
    });
  });
}
