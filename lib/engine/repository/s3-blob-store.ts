/**
 * A blob store in an S3-compatible bucket: one object per key under a prefix (`s3://bucket/prefix`). A put is an
 * object PUT, atomic and durable when it returns (S3 shows a whole object or none), so there is no flush and no
 * temp file; blobs over `multipartThreshold` go up in parts and are completed as one object. The SDK retries
 * throttling, server errors and dropped connections with exponential back-off and jitter (`maxAttempts`).
 */
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand,
  GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { type BlobStore, BlobNotFoundError, assertValidKey } from './blob-store';
import type { S3Location } from './s3-location';

/** S3 refuses parts under 5 MiB (but the last). */
const MIN_PART_BYTES = 5 * 1024 * 1024;
const LIST_PAGE = 1000;

export type S3BlobStoreOptions = {
  /** Blobs larger than this are uploaded in parts (default 64 MiB). */
  multipartThreshold?: number;
  /** Part size of a multipart upload (default 16 MiB, at least 5 MiB). */
  partSize?: number;
};

export class S3BlobStore implements BlobStore {
  private readonly multipartThreshold: number;
  private readonly partSize: number;

  constructor(readonly where: S3Location, private readonly client: S3Client, options: S3BlobStoreOptions = {}) {
    this.partSize = Math.max(MIN_PART_BYTES, options.partSize ?? 16 * 1024 * 1024);
    this.multipartThreshold = Math.max(this.partSize, options.multipartThreshold ?? 64 * 1024 * 1024);
  }

  get location(): string {
    return `s3://${this.where.bucket}${this.where.prefix ? `/${this.where.prefix}` : ''}`;
  }

  private objectKey(key: string): string {
    assertValidKey(key);
    return this.where.prefix ? `${this.where.prefix}/${key}` : key;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const Key = this.objectKey(key);
    const Bucket = this.where.bucket;
    if (data.length <= this.multipartThreshold) {
      await this.call(key, () => this.client.send(new PutObjectCommand({ Bucket, Key, Body: data, ContentLength: data.length })));
      return;
    }
    const { UploadId } = await this.call(key, () => this.client.send(new CreateMultipartUploadCommand({ Bucket, Key })));
    try {
      const parts: { PartNumber: number; ETag?: string }[] = [];
      for (let at = 0, PartNumber = 1; at < data.length; at += this.partSize, PartNumber++) {
        const Body = data.subarray(at, Math.min(data.length, at + this.partSize));
        const { ETag } = await this.call(key, () => this.client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body, ContentLength: Body.length })));
        parts.push({ PartNumber, ETag });
      }
      await this.call(key, () => this.client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } })));
    } catch (err) {
      // The parts of a failed upload are billed until aborted (a bucket lifecycle rule catches those of a kill).
      await this.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  async get(key: string): Promise<Buffer> {
    // The body too: a connection cut mid-object is a storage failure, as in readInto.
    return this.call(key, async () => {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.where.bucket, Key: this.objectKey(key) }));
      return Buffer.from(await response.Body!.transformToByteArray());
    });
  }

  async readInto(key: string, target: Uint8Array): Promise<number> {
    const response = await this.call(key, () => this.client.send(new GetObjectCommand({ Bucket: this.where.bucket, Key: this.objectKey(key) })));
    const body = response.Body as Readable;
    if (response.ContentLength !== undefined && response.ContentLength > target.length) {
      body.destroy();
      throw new Error(`blob ${key} is larger than ${target.length} bytes`);
    }
    let length = 0;
    let tooLarge = false;
    try {
      for await (const piece of body as AsyncIterable<Uint8Array>) {
        if (length + piece.length > target.length) {
          tooLarge = true; // leaving the loop destroys the stream
          break;
        }
        target.set(piece, length);
        length += piece.length;
      }
    } catch (err) {
      throw storageError(err, key, this.location);
    }
    if (tooLarge) throw new Error(`blob ${key} is larger than ${target.length} bytes`);
    return length;
  }

  async has(key: string): Promise<boolean> {
    try {
      await this.head(key);
      return true;
    } catch (err) {
      if (err instanceof BlobNotFoundError) return false;
      throw err;
    }
  }

  async size(key: string): Promise<number> {
    return (await this.head(key)).ContentLength ?? 0;
  }

  async delete(key: string): Promise<void> {
    // Deleting an absent object is success in S3.
    await this.call(key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.where.bucket, Key: this.objectKey(key) })));
  }

  async *list(prefix: string): AsyncIterable<string[]> {
    // As a folder: "chunks" and "chunks/" both list what is under chunks/, never "chunksx".
    const folder = prefix.split('/').filter(Boolean).join('/');
    const under = [this.where.prefix, folder].filter(Boolean).join('/');
    const Prefix = under ? `${under}/` : '';
    const strip = this.where.prefix ? this.where.prefix.length + 1 : 0;
    let ContinuationToken: string | undefined;
    do {
      const page = await this.call(prefix, () => this.client.send(new ListObjectsV2Command({ Bucket: this.where.bucket, Prefix, ContinuationToken, MaxKeys: LIST_PAGE })));
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key ? [object.Key.slice(strip)] : []));
      if (keys.length) yield keys;
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  private head(key: string) {
    return this.call(key, () => this.client.send(new HeadObjectCommand({ Bucket: this.where.bucket, Key: this.objectKey(key) })));
  }

  private async call<T>(key: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      throw storageError(err, key, this.location);
    }
  }
}

/**
 * An SDK error as the blob store contract wants it: an absent object is BlobNotFoundError; a refusal, a missing
 * bucket or a network failure an Error with an errno-like `code` (which the Repository turns into one message
 * naming the repository); anything else code ES3 with S3's own words.
 */
function storageError(err: unknown, key: string, location = ''): Error {
  const e = err as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const named = (code: string, message: string) => Object.assign(new Error(message, { cause: err }), { code });
  if (e.name === 'NoSuchBucket') return named('ENOBUCKET', `bucket does not exist: ${e.message ?? ''}`);
  if (e.name === 'NoSuchKey' || e.name === 'NotFound' || status === 404) return new BlobNotFoundError(key, location);
  if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden'].includes(e.name ?? '') || status === 403) {
    return named('EACCES', `access denied (${e.name}): check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE)`);
  }
  if (typeof e.code === 'string' && /^E[A-Z0-9]+$/.test(e.code)) return named(e.code, e.message ?? e.code);
  return named('ES3', `S3 ${e.name ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`);
}

/**
 * A client configured the standard AWS way: credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile
 * (AWS_PROFILE), the region from AWS_REGION (default us-east-1), an endpoint from AWS_ENDPOINT_URL_S3 (or
 * AWS_ENDPOINT_URL) for S3-compatible servers, which then get path-style addressing. Request checksums only where
 * S3 requires them: several S3-compatible servers reject the SDK's default ones.
 */
export function s3ClientFromEnvironment(env: Record<string, string | undefined> = process.env, options: { requestTimeoutMs?: number; maxAttempts?: number } = {}): S3Client {
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  // The SDK warns on every start under Node 20 that its releases after January 2027 will need Node 22: not the
  // backup administrator's concern at run time (the README says which Node the stack wants).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_SESSION_TOKEN: sessionToken } = env;
  return new S3Client({
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    // Keys given are used as given; otherwise the SDK's own chain (a profile, SSO, instance roles).
    ...(accessKeyId && secretAccessKey ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } } : {}),
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    maxAttempts: options.maxAttempts ?? 8,
    retryMode: 'standard',
    // Without timeouts a server that accepts and never answers hangs the run forever (the SDK has none by default).
    // The request timeout is of inactivity on the socket, not of the whole transfer.
    requestHandler: { connectionTimeout: 10_000, requestTimeout: options.requestTimeoutMs ?? 60_000, throwOnRequestTimeout: true },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
