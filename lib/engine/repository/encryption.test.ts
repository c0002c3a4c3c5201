import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { seededRandom, tempDir } from '../../../test/helpers';
import { blobStoreConformance, blobStoreFaultConformance } from './blob-store.conformance';
import { createChunkDecoder, createChunkEncoder, encodeChunk } from './chunk-codec';
import { BlockPool } from '../chunking/block-pool';
import { chunkIdOf, chunkKey, hashChunk } from './chunk-id';
import {
  RepositoryKeys, SEAL_OVERHEAD, SealBrokenError, SealedBlobStore, formatRecoveryKey, keySlotKey, makeKeySlot, newMasterKey,
  parseKeySlot, parseRecoveryKey, unlockMasterKey,
} from './encryption';
import { FaultyBlobStore } from './faulty-blob-store';
import { FsBlobStore } from './fs-blob-store';
import { Repository, RepositoryLockedError } from './repository';
import { repositorySecret } from '../../config';

/** Cheap scrypt for tests (the default costs 0.2 s a slot). */
const CHEAP = { N: 1024, r: 8, p: 1 };
const keys = () => new RepositoryKeys(newMasterKey(), 'test-repository');

blobStoreConformance('SealedBlobStore over FsBlobStore', async () => new SealedBlobStore(new FsBlobStore(await tempDir()), keys()));
blobStoreFaultConformance('SealedBlobStore over FaultyBlobStore', async (faults) => {
  const root = await tempDir();
  const store = new SealedBlobStore(new FaultyBlobStore(new FsBlobStore(root), { faults }), keys());
  return {
    store,
    leftovers: async () => (await fs.readdir(root, { recursive: true })).filter((name) => name.includes('.tmp-')),
  };
});

describe('sealed blobs', () => {
  it('open only under their own name and key, whole: any changed byte, a truncation or a swap is refused', () => {
    const ring = keys();
    const random = seededRandom(7);
    for (let trial = 0; trial < 40; trial++) {
      const plain = Buffer.from(Array.from({ length: Math.floor(random() * 3000) }, () => Math.floor(random() * 256)));
      const name = `chunks/ab/${trial}`;
      const sealed = ring.seal(name, plain);
      expect(sealed.length).toBe(plain.length + SEAL_OVERHEAD);
      expect(ring.unseal(name, sealed).equals(plain)).toBe(true);
      // Two seals of the same bytes differ (random nonce): equal contents are not visible as equal blobs.
      expect(ring.seal(name, plain).equals(sealed)).toBe(false);
      const flipped = Buffer.from(sealed);
      flipped[Math.floor(random() * flipped.length)] ^= 1 << Math.floor(random() * 8);
      expect(() => ring.unseal(name, flipped)).toThrow(SealBrokenError);
      expect(() => ring.unseal(name, sealed.subarray(0, Math.floor(random() * sealed.length)))).toThrow(SealBrokenError);
      expect(() => ring.unseal(`chunks/ab/other-${trial}`, sealed)).toThrow(SealBrokenError);
      expect(() => keys().unseal(name, sealed)).toThrow(SealBrokenError);
    }
  });

  it('keep config.json and key slots out of the sealed store', async () => {
    const store = new SealedBlobStore(new FsBlobStore(await tempDir()), keys());
    await expect(store.put('config.json', Buffer.from('{}'))).rejects.toThrow(/in the clear/);
    await expect(store.get('keys/k-00000000.json')).rejects.toThrow(/in the clear/);
  });
});

describe('key slots', () => {
  it('open with their passphrase or recovery key only, bound to their repository and slot id', async () => {
    const master = newMasterKey();
    const recovery = formatRecoveryKey(Buffer.alloc(32, 9));
    const pass = await makeKeySlot({ master, repositoryId: 'r1', secret: 'correct horse', kind: 'passphrase', scryptCost: CHEAP });
    const rescue = await makeKeySlot({ master, repositoryId: 'r1', secret: recovery, kind: 'recovery' });
    expect((await unlockMasterKey([pass, rescue], 'correct horse', 'r1'))?.master.equals(master)).toBe(true);
    expect((await unlockMasterKey([pass, rescue], recovery.toLowerCase().replace(/-/g, ' - '), 'r1'))?.slot.id).toBe(rescue.id);
    expect(await unlockMasterKey([pass, rescue], 'correct horsE', 'r1')).toBeUndefined();
    // Another repository's id, or the slot filed under another id: the wrapped key does not open.
    expect(await unlockMasterKey([pass], 'correct horse', 'r2')).toBeUndefined();
    expect(await unlockMasterKey([{ ...pass, id: 'k-00000000' }], 'correct horse', 'r1')).toBeUndefined();
    expect(pass.kdf).toMatchObject({ algorithm: 'scrypt', N: 1024, r: 8, p: 1 });
    expect(JSON.stringify([pass, rescue])).not.toContain(master.toString('base64'));
  });

  it('a recovery key with a typo is told as a typo; a text that is no recovery key is a passphrase', () => {
    const text = formatRecoveryKey(Buffer.alloc(32, 1));
    expect(parseRecoveryKey(text)?.equals(Buffer.alloc(32, 1))).toBe(true);
    const typo = `${text.slice(0, 10)}${text[10] === 'a' ? 'b' : 'a'}${text.slice(11)}`;
    expect(() => parseRecoveryKey(typo)).toThrow(/typo/);
    expect(() => parseRecoveryKey('RK1-1234')).toThrow(/malformed/);
    expect(parseRecoveryKey('my passphrase')).toBeUndefined();
  });

  it('a hostile slot is refused before any scrypt runs (cost bounds, name, kind)', async () => {
    const slot = await makeKeySlot({ master: newMasterKey(), repositoryId: 'r', secret: 'x', kind: 'passphrase', scryptCost: CHEAP });
    const key = keySlotKey(slot.id);
    expect(parseKeySlot(JSON.parse(JSON.stringify(slot)), key)).toEqual(slot);
    for (const hostile of [
      { ...slot, kdf: { ...slot.kdf, N: 2 ** 30 } }, { ...slot, kdf: { ...slot.kdf, N: 1000 } }, { ...slot, kdf: { ...slot.kdf, r: 1e6 } },
      { ...slot, id: 'k-ffffffff' }, { ...slot, kind: 'admin' }, { ...slot, kind: 'recovery' }, { ...slot, formatVersion: 2 }, null,
      // Each within its own bound, together gigabytes and minutes: memory 128·N·r and work N·r·p are bounded too.
      { ...slot, kdf: { ...slot.kdf, N: 2 ** 20, r: 32, p: 16 } }, { ...slot, kdf: { ...slot.kdf, N: 2 ** 20, r: 8, p: 16 } },
      // A passphrase slot derives by scrypt (hkdf would make unlocking with a passphrase fail outright).
      { ...slot, kdf: { algorithm: 'hkdf-sha256', salt: slot.kdf.salt } },
    ]) {
      expect(() => parseKeySlot(hostile, key)).toThrow(/damaged/);
    }
  });
});

describe('an encrypted repository', () => {
  const encrypted = async (dir: string, passphrase = 'pass phrase') => Repository.create(new FsBlobStore(dir), { encrypt: { passphrase, scryptCost: CHEAP } });

  it('two removals of its two slots at once leave one (none is never left), however they interleave', async () => {
    for (let round = 0; round < 6; round++) {
      const dir = await tempDir();
      const { repo } = await encrypted(dir, 'first');
      const { slots } = await repo.keySlots();
      expect(slots).toHaveLength(2);
      const other = await Repository.open(new FsBlobStore(dir), { secret: 'first' });
      const results = await Promise.allSettled([repo.removeKeySlot(slots[0].id), other.removeKeySlot(slots[1].id)]);
      const left = (await repo.keySlots()).slots;
      expect(left.length, `round ${round}: ${results.map((r) => r.status).join(', ')}`).toBeGreaterThan(0);
      expect(results.filter((r) => r.status === 'fulfilled').length).toBe(2 - left.length);
      for (const r of results) if (r.status === 'rejected') expect(String(r.reason)).toMatch(/at the same time|last/);
    }
  });

  it('a chunk sealed in a block worker opens on the main thread and the other way round; a flipped byte fails either way', async () => {
    const dir = await tempDir();
    const { repo } = await encrypted(dir);
    const pool = new BlockPool({ ids: repo.ids, sealer: repo.chunkSealer, blockSize: 65536, threads: 1, slots: 2 });
    const reader = new BlockPool({ ids: repo.ids, sealer: repo.chunkSealer, blockSize: 65536, threads: 1, slots: 2, forRestore: true });
    try {
      const random = seededRandom(7);
      const blocks = [0, 1].map(() => Buffer.from(Array.from({ length: 50_000 }, () => Math.floor(random() * 16))));
      // One sealed in a worker, one by the sealed store on this thread.
      const slot = await pool.acquire(blocks[0].length);
      slot.bytes.set(blocks[0]);
      const { id: first } = await pool.hash(slot);
      await repo.putEncodedChunk(first, await pool.encode(slot, first), { sealed: true });
      pool.release(slot);
      const second = chunkIdOf(repo.ids, blocks[1]);
      await repo.putEncodedChunk(second, encodeChunk(createChunkEncoder(1), blocks[1]));
      for (const [index, id] of [first, second].entries()) {
        expect((await fs.readFile(path.join(dir, chunkKey(id)))).includes(blocks[index].subarray(0, 64))).toBe(false);
        // This thread's reader (the sealed store), then a worker's.
        const frame = Buffer.alloc(65536 + 1);
        const decoded = Buffer.alloc(blocks[index].length);
        expect(createChunkDecoder()(frame, await repo.readEncodedChunkInto(id, frame), decoded)).toBe(true);
        expect(decoded.equals(blocks[index])).toBe(true);
        const into = await reader.acquire(blocks[index].length);
        expect(await reader.decode(into, await repo.readEncodedChunkInto(id, reader.frameSpace(into), { sealed: true }), id)).toBe(true);
        expect(Buffer.from(into.bytes).equals(blocks[index])).toBe(true);
        // A flipped byte of the ciphertext: refused by both.
        const file = path.join(dir, chunkKey(id));
        const bytes = await fs.readFile(file);
        bytes[30] ^= 1;
        await fs.writeFile(file, bytes);
        expect(await reader.decode(into, await repo.readEncodedChunkInto(id, reader.frameSpace(into), { sealed: true }), id)).toBe(false);
        await expect(repo.readEncodedChunkInto(id, frame)).rejects.toThrow(/authentication/);
        reader.release(into);
      }
    } finally {
      await pool.close();
      await reader.close();
    }
  });

  it('a damaged or bogus slot before the right one does not lock it out, and is named when nothing opens', async () => {
    const dir = await tempDir();
    await encrypted(dir, 'right');
    const bogus = { formatVersion: 1, id: 'k-00000000', kind: 'passphrase', createdAt: '2000-01-01T00:00:00.000Z', kdf: { algorithm: 'hkdf-sha256', salt: 'AAAA' }, wrappedKey: 'AAAA' };
    await fs.writeFile(path.join(dir, 'keys', 'k-00000000.json'), JSON.stringify(bogus));
    expect((await Repository.open(new FsBlobStore(dir), { secret: 'right' })).encrypted).toBe(true);
    await expect(Repository.open(new FsBlobStore(dir), { secret: 'wrong' })).rejects.toThrow(/skipped as damaged: keys\/k-00000000.json is damaged/);
  });

  it('is not created over an existing repository, and a config.json with impossible numbers is refused', async () => {
    const dir = await tempDir();
    await encrypted(dir);
    await expect(encrypted(dir)).rejects.toThrow(/already holds a repository/);
    const config = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const [field, value] of [['blockSize', 3], ['blockSize', 0], ['blockSize', 3 * 2 ** 20], ['formatVersion', 'x'], ['id', 7]] as const) {
      const altered = path.join(await tempDir(), 'repo');
      await fs.cp(dir, altered, { recursive: true });
      await fs.writeFile(path.join(altered, 'config.json'), JSON.stringify({ ...config, [field]: value }));
      await expect(Repository.open(new FsBlobStore(altered), { secret: 'pass phrase' }), `${field} ${value}`).rejects.toThrow(/config.json is damaged/);
    }
  });

  it('a FIFO where a blob or a passphrase file should be is refused, not waited on', async () => {
    const dir = await tempDir();
    await encrypted(dir);
    await fs.rm(path.join(dir, 'config.json'));
    await promisify(execFile)('mkfifo', [path.join(dir, 'config.json')]);
    await expect(Repository.open(new FsBlobStore(dir), { secret: 'pass phrase' })).rejects.toThrow(/not a regular file/);
    const fifo = path.join(dir, 'passphrase');
    await promisify(execFile)('mkfifo', [fifo]);
    const saved = process.env.VMDEDUP_PASSWORD_FILE;
    process.env.VMDEDUP_PASSWORD_FILE = fifo;
    try {
      expect(() => repositorySecret()).toThrow(/is not a regular file/);
    } finally {
      if (saved === undefined) delete process.env.VMDEDUP_PASSWORD_FILE;
      else process.env.VMDEDUP_PASSWORD_FILE = saved;
    }
  });

  it('names blocks by a keyed id, so the same bytes get other ids in another repository and no id is their SHA-256', async () => {
    const [a, b] = [await encrypted(await tempDir()), await encrypted(await tempDir())];
    const block = Buffer.from('the same block in two repositories');
    const [idA, idB] = [chunkIdOf(a.repo.ids, block), chunkIdOf(b.repo.ids, block)];
    expect(idA).toMatch(/^[0-9a-f]{64}$/);
    expect(idA).not.toBe(idB);
    expect(idA).not.toBe(hashChunk(block));
    expect(a.repo.config).toMatchObject({ formatVersion: 4, hash: 'hmac-sha256', encryption: { cipher: 'aes-256-gcm' } });
  });

  it('holds no plain byte of what it stores, and reads it back', async () => {
    const dir = await tempDir();
    const { repo, recoveryKey } = await encrypted(dir);
    const marker = 'VMDEDUP-PLAINTEXT-MARKER';
    const block = Buffer.from(`${marker} ${'x'.repeat(500)} ${createHash('sha256').update('r').digest('hex')}`);
    const id = chunkIdOf(repo.ids, block);
    await repo.putEncodedChunk(id, encodeChunk(createChunkEncoder(1), block));
    const digest = createHash('sha256').update('disk').digest('hex');
    await repo.putStoredDisk({ formatVersion: 2, digest, blockSize: 1024 * 1024, logicalBytes: block.length, createdAt: new Date().toISOString(), files: [{ size: block.length, blocks: [id] }] });
    const files = (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    expect(files.map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort()).toEqual(expect.arrayContaining(['config.json', chunkKey(id), `disks/${digest}.json`]));
    for (const file of files) {
      const bytes = await fs.readFile(path.join(file.parentPath, file.name));
      expect(bytes.includes(marker), file.name).toBe(false);
      expect(bytes.includes(Buffer.from(`"logicalBytes":${block.length}`)), file.name).toBe(false);
      if (!file.name.endsWith('.json') || file.parentPath.endsWith('disks')) expect(bytes.subarray(0, 4).toString(), file.name).toBe('VMDS');
    }
    const reopened = await Repository.open(new FsBlobStore(dir), { secret: recoveryKey });
    expect((await reopened.getStoredDisk(digest)).files[0].blocks).toEqual([id]);
    const frame = Buffer.alloc(block.length + 1);
    const length = await reopened.readEncodedChunkInto(id, frame);
    expect(length).toBeGreaterThan(0);
  });

  it('is locked without its secret or with a wrong one, and a removed passphrase opens it no more (in this process too)', async () => {
    const dir = await tempDir();
    const { repo } = await encrypted(dir, 'first');
    await expect(Repository.open(new FsBlobStore(dir))).rejects.toMatchObject({ reason: 'no-secret' });
    await expect(Repository.open(new FsBlobStore(dir), { secret: 'wrong' })).rejects.toBeInstanceOf(RepositoryLockedError);
    const { slot } = await repo.addKeySlot({ kind: 'passphrase', secret: 'second', scryptCost: CHEAP });
    const bySecond = await Repository.open(new FsBlobStore(dir), { secret: 'second' });
    expect(bySecond.ids).toEqual(repo.ids);
    await bySecond.removeKeySlot(slot.id);
    await expect(Repository.open(new FsBlobStore(dir), { secret: 'second' })).rejects.toMatchObject({ reason: 'wrong-secret' });
    const { slots } = await repo.keySlots();
    expect(slots.map((s) => s.kind).sort()).toEqual(['passphrase', 'recovery']);
    await repo.removeKeySlot(slots[1].id);
    await expect(repo.removeKeySlot(slots[0].id)).rejects.toThrow(/last/);
  });

  it('a chunk altered in place, or another chunk copied over it, is corrupt to readers', async () => {
    const dir = await tempDir();
    const { repo } = await encrypted(dir);
    const encoder = createChunkEncoder(1);
    const [a, b] = [Buffer.alloc(4000, 1), Buffer.alloc(4000, 2)];
    const [idA, idB] = [chunkIdOf(repo.ids, a), chunkIdOf(repo.ids, b)];
    await repo.putEncodedChunk(idA, encodeChunk(encoder, a));
    await repo.putEncodedChunk(idB, encodeChunk(encoder, b));
    await fs.copyFile(path.join(dir, chunkKey(idB)), path.join(dir, chunkKey(idA)));
    await expect(repo.readEncodedChunkInto(idA, Buffer.alloc(4001))).rejects.toThrow(/corrupt/);
    const file = path.join(dir, chunkKey(idB));
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 20] ^= 0x80;
    await fs.writeFile(file, bytes);
    await expect(repo.readEncodedChunkInto(idB, Buffer.alloc(4001))).rejects.toThrow(/corrupt/);
  });
});
