/**
 * A real S3-compatible server for tests (s3rver: objects, ranges, paged listings, multipart uploads over HTTP, with
 * S3's error codes), started by the test file as a process of its own (s3-server-process.ts), its objects in a temp
 * folder; stopped and removed when the file ends.
 */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll } from 'vitest';
import { s3ClientFromEnvironment } from '../lib/engine/repository/s3-blob-store';
import { launchS3Server } from './s3-server-process';
import { tempDir } from './scratch';

export type TestS3 = {
  /** The standard AWS environment that points a client (and the CLI) at the server. */
  env: Record<string, string>;
  client: S3Client;
  /** A new empty bucket's name. */
  newBucket(): Promise<string>;
};

export async function startS3Server(): Promise<TestS3> {
  const server = await launchS3Server(await tempDir('vmdedup-s3-'));
  const client = s3ClientFromEnvironment(server.env);
  afterAll(async () => {
    client.destroy();
    await server.stop();
  });
  return {
    env: server.env, client,
    async newBucket() {
      const bucket = `vmdedup-${randomBytes(4).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
  };
}
