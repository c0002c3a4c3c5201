/**
 * Retention and garbage collection against a real catalog and a real repository on disk, with backups running at
 * the same time (lib/engine/gc/README.md): every retained image stays restorable, byte for byte.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../../test/helpers';
import { type TokenFleet, backup, block, closeTokenFleets, restoredDigests, sha, tokenFleet, writeDisk } from '../../../test/token-fleet';
import { acquireGcLease, openBackupSession } from '../../catalog/gc-coordination';
import type { BlobStore } from '../../engine/repository/blob-store';
import type { ChunkId } from '../../engine/repository/chunk-id';
import { parsePackedImageId } from '../../engine/repository/image-pack';
import { runBackup } from '../backups/run-backup';
import { runGarbageCollection } from './collect-garbage';
import { pruneBackups } from './prune-backups';
import { verifyBackups } from './verify-backups';

const BLOCKS = 3;
type Env = TokenFleet;
afterAll(closeTokenFleets);
/** Every fleet here has a common disk (common.raw) beside each VM's own. */
const setup = (vms: string[], options: { wrap?: (store: BlobStore) => BlobStore } = {}) => tokenFleet(vms, { common: true, ...options });

const chunkFiles = async (env: Env) => {
  let n = 0;
  for await (const page of env.repo.chunkIds()) n += page.length;
  return n;
};

describe('prune and gc', () => {
  it('frees what only removed backups needed, keeps a common disk while any VM needs it, and every kept image restores', async () => {
    const env = await setup(['a', 'b']);
    const tokens: Record<string, number[]> = { a: [1, 2, 3], b: [11, 12, 13], common: [900, 901] };
    const first = await backup(env);
    const before = await chunkFiles(env);
    // a changes two blocks, b changes none: a's old blocks 2 and 3 are needed only by a's first backup.
    tokens.a = [1, 52, 53];
    await writeDisk(env.dir, 'a', tokens.a);
    const second = await backup(env);
    expect(await chunkFiles(env)).toBe(before + 2);

    const preview = await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC', dryRun: true });
    expect(preview.removed.map((r) => r.backupId).sort()).toEqual(first.backups.map((b) => b.backupId).sort());
    expect(preview.kept.every((k) => k.reasons.includes('last'))).toBe(true);
    // a's two old chunks, a's old stored disk and two image manifests: b's old image names only what b's new one does.
    const dry = await runGarbageCollection(env.sql, { repo: env.repo, dryRun: true });
    expect(dry.removedChunks).toBe(0); // nothing is garbage before the prune

    // The first run's images are one pack or two (b joins a's batch when store-ahead read b's disk before b's turn,
    // else b reads at its turn and starts a batch of its own): removed whole, their bytes are freed.
    const removedPacks = new Set(preview.removed.map((r) => parsePackedImageId(r.backupId)!.packId));
    const firstPacks = (await fs.readdir(path.join(env.repo.store.location, 'images'))).filter((name) => name.endsWith('.pack') && removedPacks.has(name.split('.')[0]));
    expect(firstPacks.reduce((members, name) => members + Number(name.split('.')[1]), 0)).toBe(preview.removed.length);
    expect(second.backups.some((b) => removedPacks.has(parsePackedImageId(b.backupId)!.packId))).toBe(false);
    let manifestBytes = 0;
    for (const name of firstPacks) manifestBytes += (await env.repo.sizeOf(`images/${name}`))!;
    const pruned = await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    expect(pruned.removed).toEqual(preview.removed);
    expect(await env.repo.backupImageIds()).toEqual(second.backups.map((b) => b.backupId).sort());
    const { rows } = await env.sql.query('SELECT "id" FROM "BackupImage" ORDER BY "id"');
    expect(rows.map((r) => r.id)).toEqual(second.backups.map((b) => b.backupId).sort());

    const gcDry = await runGarbageCollection(env.sql, { repo: env.repo, dryRun: true });
    expect(gcDry).toMatchObject({ removedChunks: 2, removedDisks: 1 });
    const gc = await runGarbageCollection(env.sql, { repo: env.repo });
    expect(gc).toMatchObject({ removedChunks: 2, removedDisks: 1, pendingChunks: 0 });
    expect(gc.freedBytes).toBe(gcDry.freedBytes);
    // What the preview promised: the image manifests prune removed, and what gc then freed.
    expect(preview.freedBytes).toBe(manifestBytes + gc.freedBytes);
    expect(await chunkFiles(env)).toBe(before);
    for (const b of second.backups) {
      const restored = await restoredDigests(env, b.backupId);
      expect(restored.get(b.vm)).toBe(sha(tokens[b.vm]));
      expect(restored.get('common')).toBe(sha(tokens.common));
    }
    // The fast path forgot the removed stored disk: nothing offers it any more.
    const { rows: versions } = await env.sql.query('SELECT count(*)::int AS n FROM "DiskVersion" v WHERE NOT EXISTS (SELECT 1 FROM "StoredDisk" s WHERE s."digest" = v."digest")');
    expect(versions[0].n).toBe(0);
    // A second gc finds nothing.
    expect(await runGarbageCollection(env.sql, { repo: env.repo })).toMatchObject({ removedChunks: 0, removedDisks: 0, freedBytes: 0 });
    // Protected backups survive any rule.
    const third = await backup(env);
    const protectedId = third.backups.find((b) => b.vm === 'a')!.backupId;
    await env.sql.query('UPDATE "BackupImage" SET "protected" = true WHERE "id" = $1', [protectedId]);
    await backup(env);
    const again = await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    expect(again.kept.find((k) => k.backupId === protectedId)?.reasons).toEqual(['protected']);
  }, 60_000);

  it('spares what a backup reused a moment before gc saw it as unreferenced (the backup started first, ends later)', async () => {
    // The backup is held right after it found one of a's old chunks in the repository (about to reuse it).
    let hold: Promise<void> | undefined;
    let reachedHold!: () => void;
    const reached = new Promise<void>((resolve) => { reachedHold = resolve; });
    let release!: () => void;
    const env = await setup(['a'], {
      wrap: (store) => ({
        ...Object.fromEntries(['put', 'get', 'size', 'delete', 'list', 'flush', 'freeBytes'].map((op) => [op, (store as unknown as Record<string, (...a: unknown[]) => unknown>)[op].bind(store)])),
        location: store.location,
        has: async (key: string) => {
          const found = await store.has(key);
          if (hold && found && key === watched) {
            reachedHold();
            await hold;
          }
          return found;
        },
      }) as BlobStore,
    });
    let watched = '';
    await backup(env);
    await writeDisk(env.dir, 'a', [1, 62, 63]);
    await backup(env);
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    // a's disk goes back to its first content: its blocks 2 and 3 are in the repository, unreferenced.
    await writeDisk(env.dir, 'a', [1, 2, 3]);
    const { createHash: h } = await import('node:crypto');
    watched = `chunks/${h('sha256').update(block(2)).digest('hex').slice(0, 2)}/${h('sha256').update(block(2)).digest('hex')}`;
    hold = new Promise<void>((resolve) => { release = resolve; });
    const running = runBackup(env.sql, { repo: env.wrapped, rereadAfterDays: 30 });
    await reached;
    // gc now: it condemns blocks 2 and 3, and waits for the backup that started before it; given no time to wait, it
    // leaves them pending and says why.
    const impatient = await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 0 });
    expect(impatient).toMatchObject({ removedChunks: 0, pendingChunks: 2 });
    expect(impatient.pendingReason).toMatch(/1 backup \(pid \d+ on .*\) that started before this collection is still running/);
    expect(await env.repo.hasChunk(watched.slice(10) as ChunkId)).toBe(true);
    // A patient gc waits for it; the backup goes on meanwhile, reuses the chunk and names it in its image.
    const patient = runGarbageCollection(env.sql, { repo: env.repo, waitMs: 30_000, pollMs: 50 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    hold = undefined;
    release();
    const report = await running;
    expect(report.failures).toEqual([]);
    const collected = await patient;
    expect(collected.removedChunks).toBe(0);
    const restored = await restoredDigests(env, report.backups[0].backupId);
    expect(restored.get('a')).toBe(sha([1, 2, 3]));
  }, 60_000);

  it('a backup that starts after gc condemned a chunk rescues the chunks it reuses; a removal under way is finished first', async () => {
    const env = await setup(['a']);
    await backup(env);
    await writeDisk(env.dir, 'a', [1, 72, 73]);
    await backup(env);
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    // A session that started before the collection keeps it waiting (it could be any backup of the fleet).
    const earlier = await openBackupSession(env.sql);
    const collecting = runGarbageCollection(env.sql, { repo: env.repo, waitMs: 30_000, pollMs: 50 });
    const condemned = async () => (await env.sql.query<{ key: string; deleting: boolean }>('SELECT "key", "deleting" FROM "CondemnedBlob" ORDER BY "key"')).rows;
    for (let i = 0; i < 200 && (await condemned()).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await condemned()).filter((r) => r.key.startsWith('chunks/'))).toHaveLength(2);
    // One of the two is half-removed, as by a collection killed mid-sweep: marked deleting (its blob still there).
    const [first] = (await condemned()).filter((r) => r.key.startsWith('chunks/'));
    await env.sql.query('UPDATE "CondemnedBlob" SET "deleting" = true WHERE "key" = $1', [first.key]);
    // The content comes back: the new backup rescues the condemned chunk and stores the one being removed anew.
    await writeDisk(env.dir, 'a', [1, 2, 3]);
    const report = await backup(env);
    expect((await condemned()).filter((r) => r.key.startsWith('chunks/'))).toEqual([]);
    await earlier.close();
    const collected = await collecting;
    expect(collected.removedChunks).toBe(0);
    expect((await restoredDigests(env, report.backups[0].backupId)).get('a')).toBe(sha([1, 2, 3]));
  }, 60_000);

  it('a collection killed mid-sweep (a blob removed, its row left) cannot later remove the copy a backup stores anew', async () => {
    const env = await setup(['a']);
    await backup(env);
    await writeDisk(env.dir, 'a', [1, 102, 103]);
    await backup(env);
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    // As a collection does up to its kill: condemn a's old block 2, mark it deleting, remove its blob; no commit after.
    const id = createHash('sha256').update(block(2)).digest('hex');
    const key = `chunks/${id.slice(0, 2)}/${id}`;
    const lease = (await acquireGcLease(env.sql))!;
    await lease.condemn([{ key, bytes: 1 }]);
    await lease.release();
    await env.sql.query('UPDATE "CondemnedBlob" SET "deleting" = true WHERE "key" = $1', [key]);
    await env.repo.remove(key);
    // The content comes back; the backup finds the chunk absent and stores it anew, finishing the removal first.
    await writeDisk(env.dir, 'a', [1, 2, 3]);
    const report = await backup(env);
    expect(await env.repo.hasChunk(id as ChunkId)).toBe(true);
    // The next collection recovers what the killed one left: nothing of the new copy.
    await runGarbageCollection(env.sql, { repo: env.repo });
    expect((await restoredDigests(env, report.backups[0].backupId)).get('a')).toBe(sha([1, 2, 3]));
  }, 60_000);

  it('does not wait for a backup whose process died (its connection closed): no clock involved', async () => {
    const env = await setup(['a']);
    await backup(env);
    await writeDisk(env.dir, 'a', [1, 82, 83]);
    await backup(env);
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    const dying = await openBackupSession(env.sql);
    // As kill -9 ends it: the server drops its connection, and with it the session's lock. Its row stays.
    await env.sql.query(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, [0x766d6273, dying.id]);
    const started = Date.now();
    const collected = await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 20_000, pollMs: 50 });
    expect(collected).toMatchObject({ removedChunks: 2, pendingChunks: 0 });
    expect(Date.now() - started).toBeLessThan(10_000);
    const { rows } = await env.sql.query('SELECT count(*)::int AS n FROM "BackupSession"');
    expect(rows[0].n).toBe(0);
    await dying.close().catch(() => undefined); // its connection is gone: this only hands the client back
  }, 60_000);

  it('refuses a second collection at the same time, and a prune with no rule', async () => {
    const env = await setup(['a']);
    await backup(env);
    const earlier = await openBackupSession(env.sql);
    await writeDisk(env.dir, 'a', [1, 92, 93]);
    await earlier.close();
    await backup(env);
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    const holder = await openBackupSession(env.sql);
    const one = runGarbageCollection(env.sql, { repo: env.repo, waitMs: 5_000, pollMs: 50 });
    for (let i = 0; i < 200; i++) {
      const { rows } = await env.sql.query('SELECT count(*)::int AS n FROM "CondemnedBlob"');
      if (rows[0].n > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await expect(runGarbageCollection(env.sql, { repo: env.repo })).rejects.toThrow(/another garbage collection is running/);
    await holder.close();
    expect((await one).removedChunks).toBe(2);
    await expect(pruneBackups(env.sql, { repo: env.repo, policy: {}, timeZone: 'UTC' })).rejects.toThrow(/no retention rule/);
  }, 60_000);

  it('seeded: backups, prunes and collections running at once, some backups aborted half-way; every kept image restores byte for byte', async () => {
    const random = seededRandom(1201);
    const vms = ['v0', 'v1', 'v2', 'v3'];
    // Backups see a slow repository (each look-up and put waits a little): collections meet them half-way.
    const jitter = seededRandom(7);
    const slow = <T>(work: () => Promise<T>) => new Promise<void>((resolve) => setTimeout(resolve, Math.floor(jitter() * 12))).then(work);
    const env = await setup(vms, {
      wrap: (store) => ({
        location: store.location,
        has: (key: string) => slow(() => store.has(key)),
        put: (key: string, data: Uint8Array) => slow(() => store.put(key, data)),
        get: (key: string) => store.get(key), size: (key: string) => store.size(key), delete: (key: string) => store.delete(key),
        list: (prefix: string) => store.list(prefix), flush: () => store.flush!(), freeBytes: () => store.freeBytes!(),
        readInto: (key: string, target: Uint8Array) => store.readInto!(key, target),
      } as BlobStore),
    });
    const tokens: Record<string, number[]> = Object.fromEntries(vms.map((vm, i) => [vm, [i * 10 + 1, i * 10 + 2, i * 10 + 3]]));
    // Each VM's earlier contents: an edit often brings back a block of two or three rounds ago, whose image the
    // prune of this very round may remove while the backup is reusing it.
    const history: Record<string, number[][]> = Object.fromEntries(vms.map((vm) => [vm, [[...tokens[vm]]]]));
    tokens.common = [900, 901];
    /** The content each image must restore to: backup id → vm → sha. */
    const expected = new Map<string, { vm: string; sha: string; common: string }>();
    let nextToken = 1000;
    for (let round = 0; round < 16; round++) {
      // Random edits: new blocks, or blocks of another VM or an earlier round (content that may be condemned now).
      for (const vm of vms) {
        if (random() < 0.5) continue;
        const i = Math.floor(random() * BLOCKS);
        const past = history[vm][Math.max(0, history[vm].length - 2 - Math.floor(random() * 2))];
        tokens[vm][i] = random() < 0.4 ? nextToken++ : past[i];
        await writeDisk(env.dir, vm, tokens[vm]);
        history[vm].push([...tokens[vm]]);
      }
      const snapshot = Object.fromEntries(vms.map((vm) => [vm, sha(tokens[vm])]));
      const controller = new AbortController();
      const abort = random() < 0.25;
      const backingUp = runBackup(env.sql, { repo: env.wrapped, rereadAfterDays: 30, signal: controller.signal }).then(
        (report) => { for (const b of report.backups) expected.set(b.backupId, { vm: b.vm, sha: snapshot[b.vm], common: sha(tokens.common) }); },
        (err) => { if (!controller.signal.aborted) throw err; },
      );
      if (abort) setTimeout(() => controller.abort(), Math.floor(random() * 150));
      const policy = { last: 1 + Math.floor(random() * 2) };
      const maintaining = (async () => {
        // Once the backup is under way (its session registered), after a random moment of it.
        for (let i = 0; i < 100; i++) {
          const { rows } = await env.sql.query('SELECT count(*)::int AS n FROM "BackupSession"');
          if (rows[0].n > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 120)));
        if (random() < 0.7) await pruneBackups(env.sql, { repo: env.repo, policy, timeZone: 'UTC' });
        await runGarbageCollection(env.sql, { repo: env.repo, waitMs: 30_000, pollMs: 20 });
      })();
      await Promise.all([backingUp, maintaining]);
    }
    await pruneBackups(env.sql, { repo: env.repo, policy: { last: 1 }, timeZone: 'UTC' });
    await runGarbageCollection(env.sql, { repo: env.repo });
    const kept = await env.repo.backupImageIds();
    expect(kept.length).toBeGreaterThanOrEqual(vms.length);
    let checked = 0;
    for (const id of kept) {
      const want = expected.get(id);
      if (!want) continue; // an aborted run's images: restorable too, content not modelled
      const restored = await restoredDigests(env, id);
      expect(restored.get(want.vm), `${id} ${want.vm}`).toBe(want.sha);
      expect(restored.get('common')).toBe(want.common);
      checked++;
    }
    for (const id of kept) await restoredDigests(env, id); // every chunk of every kept image is there and verifies
    expect(checked).toBeGreaterThanOrEqual(vms.length);
    // Nothing unreachable is left once no backup runs: what the last gc did not remove, some image needs.
    expect(await runGarbageCollection(env.sql, { repo: env.repo, dryRun: true })).toMatchObject({ removedChunks: 0, removedDisks: 0 });
  }, 240_000);
});

describe('verify', () => {
  const chunkFile = (env: Env, token: number) => {
    const id = createHash('sha256').update(block(token)).digest('hex');
    return { id, file: path.join(env.store.root, 'chunks', id.slice(0, 2), id) };
  };

  it('re-hashes each chunk once, marks the images a damaged chunk hurts, moves it aside, and the next backup heals them', async () => {
    const env = await setup(['a', 'b']);
    const first = await backup(env);
    const second = await backup(env);
    const all = [...first.backups, ...second.backups].map((b) => b.backupId).sort();

    const clean = await verifyBackups(env.sql, { repo: env.repo });
    expect(clean.images.map((i) => i.status)).toEqual(all.map(() => 'ok'));
    // a: 3 blocks, b: 3 blocks, common: 2 blocks; each read once however many of the 4 images name it.
    expect(clean.checkedChunks).toBe(8);
    expect(clean.damaged).toEqual([]);

    // A flipped bit in a's block 2 (every image of a reuses it), and b's block 12 lost.
    const flipped = chunkFile(env, 2);
    const bytes = await fs.readFile(flipped.file);
    bytes[bytes.length - 1] ^= 1;
    await fs.writeFile(flipped.file, bytes);
    const lost = chunkFile(env, 12);
    await fs.rm(lost.file);
    const damaged = await verifyBackups(env.sql, { repo: env.repo });
    const imagesOf = (vm: string) => [...first.backups, ...second.backups].filter((b) => b.vm === vm).map((b) => b.backupId).sort();
    expect(damaged.damaged).toEqual([
      { chunk: flipped.id, images: imagesOf('a'), problem: 'corrupt' },
      { chunk: lost.id, images: imagesOf('b'), problem: 'missing' },
    ].sort((x, y) => (x.chunk < y.chunk ? -1 : 1)));
    expect(damaged.images.every((i) => i.status === 'failed')).toBe(true);
    expect(damaged.images.find((i) => i.vm === 'a')!.problems).toEqual([`chunk ${flipped.id.slice(0, 12)} is corrupt`]);
    // Moved aside: out of chunks/, kept under damaged/ for a look.
    await expect(fs.stat(flipped.file)).rejects.toThrow(/ENOENT/);
    expect((await fs.readdir(path.join(env.store.root, 'damaged', 'chunks'))).some((name) => name.startsWith(flipped.id))).toBe(true);
    const { rows } = await env.sql.query<{ verifyStatus: string; n: number }>('SELECT "verifyStatus", count(*)::int AS n FROM "BackupImage" GROUP BY 1');
    expect(rows).toEqual([{ verifyStatus: 'failed', n: 4 }]);

    // Nothing changed on the disks, yet the next backup reads them (the fast path no longer offers the damaged
    // stored disks) and stores the two blocks again: every image, old ones too, is whole again.
    const healed = await backup(env);
    expect(healed.totals.bytesWritten).toBeGreaterThanOrEqual(2 * 1024);
    const after = await verifyBackups(env.sql, { repo: env.repo });
    expect(after.images.filter((i) => i.status !== 'ok')).toEqual([]);
    expect(after.images).toHaveLength(6);
    const want: Record<string, string> = { a: sha([1, 2, 3]), b: sha([11, 12, 13]) };
    for (const b of [...first.backups, ...second.backups]) expect((await restoredDigests(env, b.backupId)).get(b.vm)).toBe(want[b.vm]);

    // Verified just now: nothing is outdated after a day.
    expect((await verifyBackups(env.sql, { repo: env.repo, outdatedAfterDays: 1 })).images).toEqual([]);
    expect((await verifyBackups(env.sql, { repo: env.repo, outdatedAfterDays: 1, now: new Date(Date.now() + 2 * 86_400_000) })).images).toHaveLength(6);
  }, 60_000);
});
