import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { startS3Server } from '../../../test/s3-server';
import { BlobNotFoundError } from './blob-store';
import { blobStoreConformance, blobStoreFaultConformance } from './blob-store.conformance';
import { FaultyBlobStore } from './faulty-blob-store';
import { S3BlobStore, s3ClientFromEnvironment } from './s3-blob-store';
import { parseS3Url } from './s3-location';

const s3 = await startS3Server();
const bucket = await s3.newBucket();
/** Each store under a prefix of its own in one bucket: the tests also show that prefixes keep stores apart. */
const freshStore = (options = {}) => new S3BlobStore({ bucket, prefix: `repo-${randomBytes(4).toString('hex')}/r` }, s3.client, options);

blobStoreConformance('S3BlobStore', async () => freshStore());
// An object store has no temp files: a failed or unacknowledged PUT leaves the whole object or none.
blobStoreFaultConformance('S3BlobStore', async (faults) => ({ store: new FaultyBlobStore(freshStore(), { faults }), leftovers: async () => [] }));

describe('S3BlobStore', () => {
  it('uploads a large blob in parts and reads it back byte for byte', async () => {
    const store = freshStore({ partSize: 5 * 1024 * 1024, multipartThreshold: 6 * 1024 * 1024 });
    const big = randomBytes(12 * 1024 * 1024 + 7);
    await store.put('disks/big.json', big);
    expect(await store.size('disks/big.json')).toBe(big.length);
    expect((await store.get('disks/big.json')).equals(big)).toBe(true);
  });

  it('keeps stores under different prefixes apart, and lists "folders" (chunks is not chunksx)', async () => {
    const one = freshStore();
    const two = freshStore();
    await one.put('chunks/aa/1', Buffer.of(1));
    await one.put('chunksx/2', Buffer.of(2));
    await two.put('chunks/aa/3', Buffer.of(3));
    const listed = async (store: S3BlobStore, prefix: string) => {
      const keys: string[] = [];
      for await (const page of store.list(prefix)) keys.push(...page);
      return keys.sort();
    };
    expect(await listed(one, 'chunks/')).toEqual(['chunks/aa/1']);
    expect(await listed(one, 'chunks')).toEqual(['chunks/aa/1']);
    expect(await listed(one, '')).toEqual(['chunks/aa/1', 'chunksx/2']);
    expect(await listed(two, '')).toEqual(['chunks/aa/3']);
    expect(await two.has('chunks/aa/1')).toBe(false);
  });

  it('lists past one page', async () => {
    const store = freshStore();
    await Promise.all(Array.from({ length: 1234 }, (_, i) => store.put(`images/${String(i).padStart(5, '0')}`, Buffer.of(i & 255))));
    const pages: number[] = [];
    for await (const page of store.list('images/')) pages.push(page.length);
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.reduce((a, b) => a + b, 0)).toBe(1234);
  });

  it('says what is wrong: a missing bucket, refused credentials, a server that does not answer', async () => {
    const missing = new S3BlobStore({ bucket: 'no-such-bucket-here', prefix: '' }, s3.client);
    await expect(missing.put('config.json', Buffer.of(1))).rejects.toMatchObject({ code: 'ENOBUCKET' });
    await expect(missing.get('config.json')).rejects.toSatisfy((err) => !(err instanceof BlobNotFoundError) || (err as { code?: string }).code === 'ENOBUCKET');

    const wrongKey = new S3Client({ endpoint: s3.env.AWS_ENDPOINT_URL_S3, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'WRONG', secretAccessKey: 'x' } });
    const refused = new S3BlobStore({ bucket, prefix: 'x' }, wrongKey);
    await expect(refused.put('k', Buffer.of(1))).rejects.toMatchObject({ code: 'EACCES', message: expect.stringMatching(/access denied.*AWS_ACCESS_KEY_ID/) });
    wrongKey.destroy();

    const nowhere = new S3Client({ endpoint: 'http://127.0.0.1:9', forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, maxAttempts: 1 });
    await expect(new S3BlobStore({ bucket, prefix: 'x' }, nowhere).has('k')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    nowhere.destroy();
  });

  it('gives up on a server that accepts and never answers (a timeout, not a hang)', async () => {
    const silent = net.createServer(() => undefined).listen(0, '127.0.0.1');
    await new Promise((resolve) => silent.once('listening', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const client = s3ClientFromEnvironment({ ...s3.env, AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}` }, { requestTimeoutMs: 500, maxAttempts: 2 });
    try {
      await expect(new S3BlobStore({ bucket, prefix: 'x' }, client).get('k')).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    } finally {
      client.destroy();
      silent.close();
    }
  });

  it('parses s3:// locations and refuses what names no bucket', () => {
    expect(parseS3Url('s3://backups')).toEqual({ bucket: 'backups', prefix: '' });
    expect(parseS3Url('s3://backups/site-a/vmdedup/')).toEqual({ bucket: 'backups', prefix: 'site-a/vmdedup' });
    expect(parseS3Url('/srv/backup')).toBeUndefined();
    expect(() => parseS3Url('s3://')).toThrow(/does not name an S3 bucket/);
    expect(() => parseS3Url('s3://Bad_Bucket/x')).toThrow(/does not name an S3 bucket/);
    expect(() => parseS3Url('s3://backups/../etc')).toThrow(/invalid blob key/);
  });
});
