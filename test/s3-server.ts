/**
 * A real S3-compatible server for tests (s3rver: objects, ranges, paged listings, multipart uploads over HTTP, with
 * S3's error codes), started by the test file as a process of its own on a free port, its objects in a temp folder;
 * stopped and removed when the file ends.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll } from 'vitest';
import { s3ClientFromEnvironment } from '../lib/engine/repository/s3-blob-store';
import { tempDir } from './scratch';

export type TestS3 = {
  /** The standard AWS environment that points a client (and the CLI) at the server. */
  env: Record<string, string>;
  client: S3Client;
  /** A new empty bucket's name. */
  newBucket(): Promise<string>;
};

export async function startS3Server(): Promise<TestS3> {
  const dir = await tempDir('vmdedup-s3-');
  const child = spawn(process.execPath, ['--openssl-legacy-provider', path.join(import.meta.dirname, 's3-server-main.mjs'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the S3 test server exited (${code}) before it listened`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });
  // s3rver's one account; it refuses another key id (InvalidAccessKeyId).
  const env = { AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
  const client = s3ClientFromEnvironment(env);
  afterAll(async () => {
    client.destroy();
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  });
  return {
    env, client,
    async newBucket() {
      const bucket = `vmdedup-${randomBytes(4).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
  };
}
