/**
 * Starts the S3-compatible test server (s3-server-main.mjs: s3rver) as a process of its own on a free port, its
 * objects in `dir`; for the tests (s3-server.ts) and the benchmark (bench/s3-bench.ts). The caller stops it.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

export type S3ServerProcess = {
  /** The standard AWS environment that points a client (and the CLI) at the server. */
  env: Record<string, string>;
  stop(): Promise<void>;
};

export async function launchS3Server(dir: string): Promise<S3ServerProcess> {
  // --openssl-legacy-provider: s3rver seals listing continuation tokens with DES.
  const child = spawn(process.execPath, ['--openssl-legacy-provider', path.join(import.meta.dirname, 's3-server-main.mjs'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the S3 test server exited (${code}) before it listened`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });
  // s3rver's one account; it refuses another key id (InvalidAccessKeyId).
  const env = { AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
  return {
    env,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
