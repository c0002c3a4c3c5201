/**
 * Adversarial review of verify and of scheduled verify/gc runs: each test states what should hold and fails while the
 * defect it names is there. In-process: a real catalog, an FsBlobStore repository, a libvirt source of raw disks.
 */
import { type TokenFleet, backup, block, chunkIdOf, closeTokenFleets, restoredDigests, sha, tokenFleet, writeDisk } from '../../../test/token-fleet';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Repository } from '../../engine/repository/repository';
import { runBackup } from '../backups/run-backup';
import { saveScheduledJob } from '../jobs/scheduled-jobs';
import { runScheduledJob } from '../jobs/run-scheduled-job';
import { verifyBackups } from './verify-backups';

type Env = TokenFleet;
afterAll(closeTokenFleets);
const setup = (vms: string[]) => tokenFleet(vms);

/** SHA-256 of the disk `vm` as a restore of `backupId` would rebuild it. */
const restoredDigest = async (env: Env, backupId: string, vm: string) => (await restoredDigests(env, backupId)).get(vm)!;

const diskDigestOf = async (env: Env, backupId: string) => (await env.repo.getBackupImage(backupId)).disks[0].digest;
const manifestFile = (env: Env, digest: string) => path.join(env.store.root, 'disks', `${digest}.json`);

describe('verify (adversarial)', () => {
  it('an edited stored-disk manifest is healed by the next backup of the same content (it is reused as it is)', async () => {
    const env = await setup(['a']);
    const first = await backup(env);
    const digest = await diskDigestOf(env, first.backups[0].backupId);
    // The manifest now names block 1 where block 2 was: every chunk it names is whole, its digest no longer follows.
    const manifest = JSON.parse(await fs.readFile(manifestFile(env, digest), 'utf8'));
    manifest.files[0].blocks[1] = manifest.files[0].blocks[0];
    await fs.writeFile(manifestFile(env, digest), JSON.stringify(manifest));
    const damaged = await verifyBackups(env.sql, { repo: env.repo });
    expect(damaged.images.map((i) => i.status)).toEqual(['failed']);
    expect(damaged.damagedDisks).toEqual([digest]);

    // The disk did not change: the next backup reads it (the fast path no longer offers it) and should store a
    // whole manifest for its content. It finds the damaged one present and names it again.
    const next = await backup(env);
    const after = await verifyBackups(env.sql, { repo: env.repo });
    expect(after.images.find((i) => i.backupId === next.backups[0].backupId)).toMatchObject({ status: 'ok' });
    expect(await restoredDigest(env, next.backups[0].backupId, 'a')).toBe(sha([1, 2, 3]));
  }, 60_000);

  it('an unparseable stored-disk manifest: the VM can still be backed up after verify flags it', async () => {
    const env = await setup(['a']);
    const first = await backup(env);
    const digest = await diskDigestOf(env, first.backups[0].backupId);
    await fs.writeFile(manifestFile(env, digest), '{"formatVersion":2,"digest":"');
    const damaged = await verifyBackups(env.sql, { repo: env.repo });
    expect(damaged.images.map((i) => i.status)).toEqual(['failed']);
    // The disk is read again; storing its content finds the torn manifest "present" and fails the VM, every run.
    const next = await runBackup(env.sql, { repo: env.repo, rereadAfterDays: 30 });
    expect(next.failures.map((f) => f.error)).toEqual([]);
  }, 60_000);

  it('control: with the fast path in play, a completed verify makes the next backup store a corrupt chunk again', async () => {
    const env = await setup(['a']);
    await backup(env);
    const fast = await backup(env);
    expect(fast.totals.bytesRead, 'the second backup takes the fast path').toBe(0);
    const id = chunkIdOf(2);
    const file = path.join(env.store.root, 'chunks', id.slice(0, 2), id);
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 1] ^= 1;
    await fs.writeFile(file, bytes);
    expect((await verifyBackups(env.sql, { repo: env.repo })).images.map((i) => i.status)).toEqual(['failed', 'failed']);
    const third = await backup(env);
    expect(await restoredDigest(env, third.backups[0].backupId, 'a')).toBe(sha([1, 2, 3]));
  }, 60_000);

  it('a verify stopped part-way (Ctrl-C, a job\'s --max-run-minutes) after moving a corrupt chunk aside: the next backup must not reuse the disk that lost it', async () => {
    const env = await setup(['a']);
    await backup(env);
    expect((await backup(env)).totals.bytesRead, 'the second backup takes the fast path').toBe(0);
    const id = chunkIdOf(2);
    const file = path.join(env.store.root, 'chunks', id.slice(0, 2), id);
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 1] ^= 1;
    await fs.writeFile(file, bytes);
    const controller = new AbortController();
    await expect(verifyBackups(env.sql, { repo: env.repo, signal: controller.signal, onProgress: () => controller.abort() })).rejects.toThrow();
    // The chunk was moved aside, yet nothing was recorded: no image verified, the fast path still offers the disk.
    await expect(fs.stat(file)).rejects.toThrow(/ENOENT/);
    const third = await backup(env);
    expect(third.totals.bytesWritten, 'the next backup stores the lost chunk again').toBeGreaterThan(0);
    expect(await restoredDigest(env, third.backups[0].backupId, 'a')).toBe(sha([1, 2, 3]));
  }, 60_000);

  it('verify concurrent with a backup that reuses the chunk it moves aside: the backup after both is whole', async () => {
    const env = await setup(['a']);
    await backup(env);
    const id = chunkIdOf(2);
    const key = `chunks/${id.slice(0, 2)}/${id}`;
    const file = path.join(env.store.root, key);
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 1] ^= 1;
    await fs.writeFile(file, bytes);
    // The concurrent backup's repository: it pauses right after finding the chunk present, while verify runs whole.
    let sawChunk!: () => void;
    const seen = new Promise<void>((resolve) => { sawChunk = resolve; });
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    const store = env.store;
    const paused = new Proxy(store, {
      get(target, prop) {
        if (prop === 'has') return async (k: string) => { const has = await target.has(k); if (k === key && has) { sawChunk(); await released; } return has; };
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const backupRepo = await Repository.open(paused);
    // rereadAfterDays 0: this backup reads the disk (as the one after a verify, or a scheduled one with --reread-after).
    const concurrent = runBackup(env.sql, { repo: backupRepo, rereadAfterDays: 0 });
    await seen;
    const verified = await verifyBackups(env.sql, { repo: env.repo });
    expect(verified.images.map((i) => i.status)).toEqual(['failed']);
    release();
    const second = await concurrent;
    expect(second.failures).toEqual([]);
    // The run after both takes the fast path: the concurrent backup recorded the disk's version after verify forgot it.
    const third = await backup(env);
    expect(await restoredDigest(env, third.backups[0].backupId, 'a'), 'the backup after verify and the concurrent backup restores whole').toBe(sha([1, 2, 3]));
  }, 60_000);

  it('a verify stopped part-way records what it verified (else a time-limited verify job re-reads the same images forever)', async () => {
    const env = await setup(['a', 'b', 'c']);
    await backup(env);
    const controller = new AbortController();
    await expect(verifyBackups(env.sql, { repo: env.repo, signal: controller.signal, onProgress: (p) => { if (p.imagesDone === 2) controller.abort(); } })).rejects.toThrow();
    const { rows } = await env.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM "BackupImage" WHERE "verifiedAt" IS NOT NULL');
    expect(rows[0].n).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('--outdated-after 7 run daily verifies each backup at least once a week (a run starting seconds earlier than last week\'s; a DST week)', async () => {
    const env = await setup(['a']);
    await backup(env);
    // Last week's run began 45 s after 02:00 (queued behind a tick, a busy worker); this week's 5 s after.
    const t0 = new Date('2026-11-24T02:00:45Z');
    await verifyBackups(env.sql, { repo: env.repo, now: t0 });
    const weekLater = await verifyBackups(env.sql, { repo: env.repo, outdatedAfterDays: 7, now: new Date('2026-12-01T02:00:05Z') });
    expect(weekLater.images, 'verified 7 days ago: due').toHaveLength(1);
    // A daily 02:00 Europe/Berlin job across the spring change: 7 days of wall time are 167 hours.
    await verifyBackups(env.sql, { repo: env.repo, now: new Date('2026-03-25T01:00:02Z') }); // 02:00:02 CET
    const dstWeek = await verifyBackups(env.sql, { repo: env.repo, outdatedAfterDays: 7, now: new Date('2026-04-01T00:00:02Z') }); // 02:00:02 CEST
    expect(dstWeek.images, 'verified 7 days ago (Berlin time): due').toHaveLength(1);
  }, 60_000);

  it('verify --vm <unknown> --outdated-after N says there is no such VM, as without --outdated-after', async () => {
    const env = await setup(['a']);
    await backup(env);
    await expect(verifyBackups(env.sql, { repo: env.repo, vms: ['nope'] })).rejects.toThrow(/no backups of a VM named 'nope'/);
    await expect(verifyBackups(env.sql, { repo: env.repo, vms: ['nope'], outdatedAfterDays: 7 })).rejects.toThrow(/no backups of a VM named 'nope'/);
  }, 60_000);
});

describe('scheduled runs (adversarial)', () => {
  it('--max-run-minutes of 25 days or more does not stop a run at once or crash it', async () => {
    const env = await setup(['a']);
    await backup(env);
    // 36000 minutes (25 days) overflows Node's 32-bit timer: AbortSignal.timeout fires after 1 ms.
    await saveScheduledJob(env.db, { name: 'long-verify', kind: 'verify', schedule: '0 5 * * *', timeZone: 'UTC', maxRunMinutes: 36_000 });
    const run = await runScheduledJob(env.db, env.sql, { name: 'long-verify', repo: env.repo });
    expect(run.kind).toBe('verify');
    // 100000 minutes: AbortSignal.timeout throws ERR_OUT_OF_RANGE before anything runs.
    await saveScheduledJob(env.db, { name: 'longer-gc', kind: 'gc', schedule: '0 5 * * *', timeZone: 'UTC', maxRunMinutes: 100_000 });
    await expect(runScheduledJob(env.db, env.sql, { name: 'longer-gc', repo: env.repo })).resolves.toMatchObject({ kind: 'gc' });
  }, 60_000);
});
