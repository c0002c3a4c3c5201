/** Where an S3 repository is, parsed apart from the store so that opening a folder repository never loads the AWS SDK. */
import { assertValidKey } from './blob-store';

export type S3Location = { bucket: string; prefix: string };

/** Whether a repository location names a bucket (`s3://…`) rather than a folder. */
export function isS3Location(location: string): boolean {
  return location.startsWith('s3://');
}

/** `s3://bucket` or `s3://bucket/some/prefix` (no trailing slash needed); undefined for anything not `s3://`. */
export function parseS3Url(url: string): S3Location | undefined {
  if (!isS3Location(url)) return undefined;
  const [bucket, ...rest] = url.slice('s3://'.length).split('/');
  // S3's bucket naming rules (3–63 of a-z 0-9 . -, starting and ending with a letter or digit).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new Error(`'${url}' does not name an S3 bucket (s3://<bucket>/<prefix>: a bucket is 3 to 63 of a-z, 0-9, '.', '-')`);
  const prefix = rest.filter(Boolean).join('/');
  if (prefix) assertValidKey(prefix);
  return { bucket, prefix };
}
