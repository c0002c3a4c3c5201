import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readStoredBlock, tempDir } from '../../../test/helpers';
import { BlockPool } from '../chunking/block-pool';
import { RepositoryError } from '../errors';
import { blobStoreConformance } from './blob-store.conformance';
import { createChunkEncoder, encodeChunk } from './chunk-codec';
import { chunkKey, hashChunk } from './chunk-id';
import { FsBlobStore } from './fs-blob-store';
import { Repository } from './repository';

blobStoreConformance('FsBlobStore', async () => new FsBlobStore(await tempDir('vmdedup-blob-')));

describe('Repository', () => {
  it('records its format and block size, and reopens with them', async () => {
    const dir = await tempDir('vmdedup-repo-');
    const repo = await Repository.openOrInit(new FsBlobStore(dir), { blockSize: 65536 });
    const reopened = await Repository.openOrInit(new FsBlobStore(dir), { blockSize: 1 << 20 });
    expect(reopened.config).toEqual(repo.config);
    expect(reopened.config.blockSize).toBe(65536);
    const onDisk = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8'));
    expect(onDisk).toMatchObject({ formatVersion: 3, hash: 'sha256', compression: { algorithm: 'zstd' } });
  });

  it('compresses what shrinks, keeps raw what does not, and verifies every read', async () => {
    const dir = await tempDir('vmdedup-repo-');
    const repo = await Repository.openOrInit(new FsBlobStore(dir));
    const encode = createChunkEncoder(1);
    const text = Buffer.from('vmdedup '.repeat(10000));
    const random = (await import('node:crypto')).randomBytes(10000);
    for (const data of [text, random]) await repo.putEncodedChunk(hashChunk(data), encodeChunk(encode, data));
    const textFile = path.join(dir, ...chunkKey(hashChunk(text)).split('/'));
    expect((await fs.stat(textFile)).size).toBeLessThan(text.length / 10);
    expect((await fs.readFile(path.join(dir, ...chunkKey(hashChunk(random)).split('/'))))[0]).toBe(0); // raw
    // Read as a restore reads: the stored frame, decoded and checked against its id by the pool's worker.
    const pool = new BlockPool({ ids: repo.ids, blockSize: text.length, forRestore: true, threads: 1 });
    try {
      const read = (data: Buffer) => readStoredBlock(repo, pool, hashChunk(data), data.length);
      expect((await read(text)).equals(text)).toBe(true);
      expect((await read(random)).equals(random)).toBe(true);

      // flip one byte of the raw chunk: the read must fail, naming the chunk
      const randomFile = path.join(dir, ...chunkKey(hashChunk(random)).split('/'));
      const bytes = await fs.readFile(randomFile);
      bytes[100] ^= 0xff;
      await fs.writeFile(randomFile, bytes);
      await expect(read(random)).rejects.toThrow(/chunk [0-9a-f]{12} is corrupt/);
      await expect(read(random)).rejects.toBeInstanceOf(RepositoryError);
      await fs.rm(randomFile);
      await expect(read(random)).rejects.toBeInstanceOf(RepositoryError);
    } finally {
      await pool.close();
    }
  });

  it('tells which stored disks it holds, asked one by one for a few and from a listing for many', async () => {
    const repo = await Repository.openOrInit(new FsBlobStore(await tempDir('vmdedup-repo-')));
    const digests = Array.from({ length: 150 }, (_, i) => createHash('sha256').update(`disk ${i}`).digest('hex'));
    const held = digests.filter((_, i) => i % 3 !== 0);
    for (const digest of held) await repo.store.put(`disks/${digest}.json`, Buffer.from('{}'));
    expect([...(await repo.storedDisksHeld(digests))].sort()).toEqual([...held].sort());
    expect([...(await repo.storedDisksHeld(digests.slice(0, 10)))].sort()).toEqual(held.filter((d) => digests.slice(0, 10).includes(d)).sort());
    expect((await repo.storedDisksHeld([])).size).toBe(0);
  });

  it('refuses a repository written by a newer format', async () => {
    const dir = await tempDir('vmdedup-repo-');
    await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify({ formatVersion: 99 }));
    await expect(Repository.open(new FsBlobStore(dir))).rejects.toThrow(/newer than this vmdedup/);
  });
});
