/**
 * The repository in an S3 bucket (issue 14), through the real CLI and a real S3-compatible server: backup, restore
 * byte for byte, prune, gc, verify (which finds a chunk damaged in the bucket), nothing written to a local folder.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, buildFleet, overwrite } from '../lib/demo/fleet';
import { cli, createTestDatabase, qemuImg, tempDir } from './helpers';
import { startS3Server } from './s3-server';

const s3 = await startS3Server();

const sha = async (file: string) => createHash('sha256').update(await fs.readFile(file)).digest('hex');

describe('a repository in an S3 bucket', () => {
  let env: Record<string, string>;
  let fleet: Fleet;
  let home: string;
  let bucket: string;
  const images = () => path.join(fleet.libvirtDir, 'images');
  const objects = async (under: string) => {
    const keys: string[] = [];
    let ContinuationToken: string | undefined;
    do {
      const page = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `site-a/vmdedup/${under}`, ContinuationToken }));
      keys.push(...(page.Contents ?? []).map((object) => object.Key!));
      ContinuationToken = page.NextContinuationToken;
    } while (ContinuationToken);
    return keys;
  };

  beforeAll(async () => {
    home = await tempDir();
    bucket = await s3.newBucket();
    fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 2, baseMiB: 4, configDiskMiB: 1, privateDiskMiB: 2, vmwareVms: 0 });
    env = { ...s3.env, VMDEDUP_HOME: path.join(home, 'home'), VMDEDUP_REPOSITORY: `s3://${bucket}/site-a/vmdedup`, DATABASE_URL: await createTestDatabase() };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
  });

  it('backs up into the bucket, stores the common base once, and writes no local repository', async () => {
    const backup = await cli(env, 'backup', '--json');
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stderr).not.toMatch(/NodeVersionSupportWarning/);
    type Entry = { path: string; action: string; bytesRead: number };
    const report = JSON.parse(backup.stdout) as { backups: { vm: string; disks: Entry[] }[] };
    expect(report.backups.map((b) => b.vm).sort()).toEqual(['vm01', 'vm02']);
    const baseUses = report.backups.flatMap((b) => b.disks.filter((d) => path.basename(d.path) === 'base-1.qcow2'));
    expect(baseUses.map((d) => d.action).sort()).toEqual(['referenced', 'stored']);
    expect(baseUses.find((d) => d.action === 'referenced')!.bytesRead).toBe(0);
    expect(await objects('config.json')).toHaveLength(1);
    expect((await objects('chunks/')).length).toBeGreaterThan(4);
    expect((await objects('images/')).length).toBeGreaterThan(0);
    await expect(fs.access(path.join(env.VMDEDUP_HOME, 'repository'))).rejects.toThrow();
    const listed = await cli(env, 'backups', '--json');
    expect(listed.code).toBe(0);
  });

  it('restores a VM from the bucket byte for byte, also after prune and gc removed an older backup', async () => {
    const data = path.join(images(), 'vm01-data.raw');
    const first = await sha(data);
    await overwrite(data, 0, 1024 * 1024, 77);
    const changed = await sha(data);
    expect(changed).not.toBe(first);
    expect((await cli(env, 'backup')).code).toBe(0);

    const chunksBefore = (await objects('chunks/')).length;
    const prune = await cli(env, 'prune', '--keep-last', '1', '--json');
    expect(prune.code, prune.stderr).toBe(0);
    const gc = await cli(env, 'gc', '--wait', '0', '--json');
    expect(gc.code, gc.stderr).toBe(0);
    // The first backup's own block of vm01's data disk is no backup's any more: gone from the bucket.
    expect((await objects('chunks/')).length).toBeLessThan(chunksBefore);

    const target = path.join(home, 'restored');
    const restore = await cli(env, 'restore', 'vm01', '--target', target, '--json');
    expect(restore.code, restore.stderr).toBe(0);
    expect(await sha(path.join(target, 'images', 'vm01-data.raw'))).toBe(changed);
    // The restored overlay names the shared base where it lives (its header differs): the same guest data.
    await qemuImg('compare', path.join(target, 'images', 'vm01.qcow2'), path.join(images(), 'vm01.qcow2'));
    // The image pack it read is kept on the local disk (packs never change): the next reader does not fetch it.
    const kept = await fs.readdir(path.join(env.VMDEDUP_HOME, 'cache', 'image-packs'), { recursive: true });
    expect(kept.some((name) => name.endsWith('.pack'))).toBe(true);
  });

  it('verifies the bucket, and finds a chunk damaged in it', async () => {
    const clean = await cli(env, 'verify', '--json');
    expect(clean.code, clean.stderr).toBe(0);

    const [victim] = await objects('chunks/');
    const stored = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: victim }));
    const bytes = Buffer.from(await stored.Body!.transformToByteArray());
    bytes[bytes.length - 1] ^= 0xff;
    await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: victim, Body: bytes }));
    const damaged = await cli(env, 'verify', '--json');
    expect(damaged.code).not.toBe(0);
    expect(damaged.stdout + damaged.stderr).toContain(victim.split('/').pop()!.slice(0, 12));
  });

  it('says clearly when the bucket cannot be reached or does not exist', async () => {
    const missing = await cli({ ...env, VMDEDUP_REPOSITORY: 's3://no-such-bucket-9/x' }, 'backup');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/s3:\/\/no-such-bucket-9\/x.*(bucket does not exist|no repository)/);
    expect(missing.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const bad = await cli({ ...env, VMDEDUP_REPOSITORY: 's3://A_B/x' }, 'backup');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/does not name an S3 bucket/);
  });
});

describe('an encrypted repository in an S3 bucket', () => {
  it('seals every object but the config and key slots, and restores byte for byte', async () => {
    const home = await tempDir();
    const bucket = await s3.newBucket();
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 1, baseMiB: 2, configDiskMiB: 1, privateDiskMiB: 1, vmwareVms: 0 });
    const env = { ...s3.env, VMDEDUP_HOME: path.join(home, 'home'), VMDEDUP_REPOSITORY: `s3://${bucket}/sealed`, DATABASE_URL: await createTestDatabase(), VMDEDUP_PASSWORD: 'bucket passphrase' };
    const init = await cli(env, 'repository', 'init', '--encrypt');
    expect(init.code, init.stderr).toBe(0);
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    const backup = await cli(env, 'backup');
    expect(backup.code, backup.stderr).toBe(0);
    const keys: string[] = [];
    let ContinuationToken: string | undefined;
    do {
      const page = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'sealed/', ContinuationToken }));
      keys.push(...(page.Contents ?? []).map((object) => object.Key!));
      ContinuationToken = page.NextContinuationToken;
    } while (ContinuationToken);
    const sealed = keys.filter((key) => key !== 'sealed/config.json' && !key.startsWith('sealed/keys/'));
    expect(sealed.some((key) => key.startsWith('sealed/chunks/'))).toBe(true);
    for (const key of sealed) {
      const object = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const bytes = Buffer.from(await object.Body!.transformToByteArray());
      expect(bytes.subarray(0, 4).toString(), key).toBe('VMDS');
      expect(bytes.includes(Buffer.from('vm01')), key).toBe(false);
    }
    const target = path.join(home, 'restored');
    const restore = await cli(env, 'restore', 'vm01', '--target', target);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await sha(path.join(target, 'images', 'vm01-data.raw'))).toBe(await sha(path.join(fleet.libvirtDir, 'images', 'vm01-data.raw')));
    await qemuImg('compare', path.join(target, 'images', 'vm01.qcow2'), path.join(fleet.libvirtDir, 'images', 'vm01.qcow2'));
  });
});

describe('sync --to an S3 bucket', () => {
  it('copies a folder repository into an encrypted bucket prefix, from which a fresh catalog restores', async () => {
    const home = await tempDir();
    const bucket = await s3.newBucket();
    const fleet = await buildFleet({ dir: path.join(home, 'fleet'), bases: 1, clonesPerBase: 1, baseMiB: 2, configDiskMiB: 1, privateDiskMiB: 1, vmwareVms: 0 });
    const env = { ...s3.env, VMDEDUP_HOME: path.join(home, 'home'), DATABASE_URL: await createTestDatabase(), VMDEDUP_SYNC_PASSWORD: 'offsite passphrase' };
    expect((await cli(env, 'source', 'add', 'kvm', '--type', 'libvirt', '--path', fleet.libvirtDir)).code).toBe(0);
    expect((await cli(env, 'backup')).code).toBe(0);
    const to = `s3://${bucket}/offsite`;
    const first = await cli(env, 'sync', '--to', to, '--encrypt', '--json');
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ target: { encrypted: true, created: true }, images: { copied: 1, failed: [] } });
    const again = await cli(env, 'sync', '--to', to, '--json');
    expect(JSON.parse(again.stdout)).toMatchObject({ images: { copied: 0, alreadyCopied: 1 }, chunks: { copied: 0 } });

    const alone = { ...s3.env, VMDEDUP_HOME: path.join(home, 'elsewhere'), DATABASE_URL: await createTestDatabase(), VMDEDUP_REPOSITORY: to, VMDEDUP_PASSWORD: 'offsite passphrase' };
    expect((await cli(alone, 'catalog', 'rebuild')).code).toBe(0);
    const target = path.join(home, 'restored');
    const restore = await cli(alone, 'restore', 'vm01', '--target', target);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await sha(path.join(target, 'images', 'vm01-data.raw'))).toBe(await sha(path.join(fleet.libvirtDir, 'images', 'vm01-data.raw')));
  });
});
