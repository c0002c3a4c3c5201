/**
 * Image packs under prune, gc, reconcile and rebuild, against a real catalog and repository: packs pruned member by
 * member, format-2 images (one file each) beside packs, and the catalog always naming exactly what the repository holds.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import zstd from 'zstd-napi';
import { afterAll, describe, expect, it } from 'vitest';
import { type TokenFleet, backup, closeTokenFleets, restoredDigests, sha, tokenFleet, writeDisk } from '../../../test/token-fleet';
import { parsePackedImageId } from '../../engine/repository/image-pack';
import { FsBlobStore } from '../../engine/repository/fs-blob-store';
import { Repository, newBackupImageId } from '../../engine/repository/repository';
import { rebuildCatalog } from '../backups/rebuild-catalog';
import { reconcileCatalog } from '../backups/reconcile-catalog';
import { runGarbageCollection } from './collect-garbage';
import { pruneBackups } from './prune-backups';

afterAll(closeTokenFleets);

const catalogIds = async (env: TokenFleet) => (await env.sql.query<{ id: string }>('SELECT "id" FROM "BackupImage" ORDER BY "id" COLLATE "C"')).rows.map((r) => r.id);
const imageFiles = async (env: TokenFleet) => (await fs.readdir(path.join(env.store.location, 'images'))).filter((name) => name !== '.tmp').sort();

/** The catalog names exactly the repository's images, a fresh reader finds each, and each restores byte for byte. */
async function consistent(env: TokenFleet, expected: Record<string, string>, what: string) {
  const fresh = await Repository.open(new FsBlobStore(env.store.location));
  const ids = await fresh.backupImageIds();
  expect(await catalogIds(env), what).toEqual(ids);
  for (const id of ids) {
    const image = await fresh.getBackupImage(id);
    const digests = await restoredDigests({ repo: fresh, pool: env.pool }, id);
    const own = digests.get(image.vm.name)!;
    expect(own, `${what}: ${id} (${image.vm.name})`).toBe(expected[`${image.vm.name}@${own}`] ?? 'unexpected content');
  }
  return ids;
}

describe('image packs under prune and gc', () => {
  it('a pack pruned member by member: gc frees only what the pruned members needed, and the pack goes with its last', async () => {
    const env = await tokenFleet(['a', 'b', 'c'], { common: true });
    const tokens: Record<string, number[]> = { a: [1, 2, 3], b: [11, 12, 13], c: [21, 22, 23] };
    const expected: Record<string, string> = {};
    const known = () => { for (const [vm, t] of Object.entries(tokens)) expected[`${vm}@${sha(t)}`] = sha(t); };
    known();
    await backup(env);
    const second = await backup(env); // the fast path: one batch, one pack of a, b, c
    const secondPacks = new Set(second.backups.map((b) => parsePackedImageId(b.backupId)!.packId));
    expect(secondPacks.size).toBe(1);
    tokens.a = [1, 52, 53];
    known();
    await writeDisk(env.dir, 'a', tokens.a);
    await backup(env);
    await consistent(env, expected, 'after three runs');

    // a keeps its newest only: its member of the second run's pack is marked gone, the pack stays for b and c.
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, vms: ['a'], timeZone: 'UTC' });
    const [secondPack] = secondPacks;
    expect((await imageFiles(env)).filter((name) => name.startsWith(secondPack))).toEqual([`${secondPack}.3.pack`, `${second.backups.find((b) => b.vm === 'a')!.backupId}.gone`].sort());
    const gc = await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 0 });
    expect(gc.removedChunks).toBe(2); // a's blocks 2 and 3
    await consistent(env, expected, 'after pruning a');

    // b and then c: the pack goes with its last member, then its marks.
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, vms: ['b'], timeZone: 'UTC' });
    await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 0 });
    await consistent(env, expected, 'after pruning b');
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, vms: ['c'], timeZone: 'UTC' });
    expect((await imageFiles(env)).filter((name) => name.startsWith(secondPack))).toEqual([]);
    const final = await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 0 });
    expect(final.removedChunks).toBe(0);
    const ids = await consistent(env, expected, 'after pruning c');
    expect(ids).toHaveLength(3);

    // A rebuild from the repository alone gives the same catalog; a reconcile then has nothing to do.
    await rebuildCatalog(env.sql, { repo: env.repo, location: env.store.location });
    expect(await catalogIds(env)).toEqual(ids);
    expect((await reconcileCatalog(env.sql, { repo: env.repo })).recorded).toEqual([]);
  }, 120_000);

  it('format-2 images (one file each) beside packs: rebuild, prune, gc and restore', async () => {
    const env = await tokenFleet(['a', 'b'], { common: true });
    const tokens: Record<string, number[]> = { a: [1, 2, 3], b: [11, 12, 13] };
    const expected: Record<string, string> = {};
    const known = () => { for (const [vm, t] of Object.entries(tokens)) expected[`${vm}@${sha(t)}`] = sha(t); };
    known();
    await backup(env);
    // Make this run's images what format 2 wrote: images/<id>.json with ids of a single image, config format 2.
    const imagesDir = path.join(env.store.location, 'images');
    for (const name of await imageFiles(env)) {
      const pack = JSON.parse(zstd.decompress(await fs.readFile(path.join(imagesDir, name))).toString('utf8')) as { images: { id: string; createdAt: string }[] };
      for (const image of pack.images) {
        image.id = newBackupImageId(new Date(image.createdAt));
        await fs.writeFile(path.join(imagesDir, `${image.id}.json`), JSON.stringify(image, null, 1));
      }
      await fs.rm(path.join(imagesDir, name));
    }
    const configFile = path.join(env.store.location, 'config.json');
    await fs.writeFile(configFile, JSON.stringify({ ...JSON.parse(await fs.readFile(configFile, 'utf8')), formatVersion: 2 }, null, 2));
    const legacy = await Repository.open(new FsBlobStore(env.store.location));
    await rebuildCatalog(env.sql, { repo: legacy, location: env.store.location, adopt: true });
    await consistent(env, expected, 'format 2, rebuilt');

    tokens.a = [1, 52, 53];
    known();
    await writeDisk(env.dir, 'a', tokens.a);
    const run = await runBackupOf(env, legacy);
    expect(JSON.parse(await fs.readFile(configFile, 'utf8')).formatVersion).toBe(3);
    expect(run.every((id) => parsePackedImageId(id))).toBe(true);
    await consistent(env, expected, 'packs beside files');

    await pruneBackups(env.sql, { repo: legacy, policy: { last: 1 }, timeZone: 'UTC' });
    expect((await imageFiles(env)).filter((name) => name.endsWith('.json'))).toEqual([]);
    const gc = await runGarbageCollection(env.sql, { repo: legacy, waitMs: 0 });
    expect(gc.removedChunks).toBe(2);
    expect(await consistent(env, expected, 'format-2 images pruned')).toEqual([...run].sort());
  }, 120_000);
});

async function runBackupOf(env: TokenFleet, repo: Repository): Promise<string[]> {
  return (await backup(env, repo)).backups.map((b) => b.backupId);
}
