import { Readable } from 'node:stream';
import { DeleteObjectsCommand, GetObjectCommand, HeadBucketCommand, ListObjectsV2Command, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { S3ArtifactsConfig } from '../config/s3-config.js';
import type { ObjectBackend } from './object-backend.js';

/** Tries of one put before it fails (each with a fresh body). */
const PUT_TRIES = 3;
/** Multipart parts: at most QUEUE × PART bytes of a body are in memory at once (lib-storage). */
const PART_BYTES = 8 * 1024 * 1024;
const QUEUE = 2;

/**
 * An S3-compatible bucket (`artifacts: { s3: … }` in crowdbake.yml) through the AWS SDK v3, so
 * that every master of a farm serves every build's artifacts and finished logs.
 *
 * - Puts go through `@aws-sdk/lib-storage`'s Upload: one PutObject for a small body, a
 *   multipart upload of 8 MiB parts, two in flight, for a larger one — so a body is streamed
 *   and at most 16 MiB of it is in memory, whatever its size (S3's 5 GiB single-put limit does
 *   not apply). A failed multipart upload is aborted (no parts left behind). Each of the 3
 *   tries opens the body anew; a 4xx answer (access denied, a key refused) is not tried again.
 * - Keys are `PREFIX` + a key from object-backend.ts (`artifactKey`, `logKey`): the master's
 *   own ids, and names encoded into one segment. Credentials come only from the SDK's
 *   standard chain (s3-config.ts refuses keys in the file).
 */
export class S3Objects implements ObjectBackend {
  readonly shared = true;
  private readonly client: S3Client;

  constructor(private readonly cfg: S3ArtifactsConfig, private readonly retryBaseMs = 250) {
    this.client = new S3Client({
      region: cfg.region, forcePathStyle: cfg.forcePathStyle, maxAttempts: 3,
      // Puts are retried here (put()), reads and lists by the SDK.
      // Checksums only where S3 requires them: the SDK's default streams a body as aws-chunked
      // with a trailing checksum, which many S3-compatible services store as it came (framing
      // and all). The master checked an artifact's sha256 itself before the put, and keeps it as metadata.
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
      ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
    });
  }

  /** Where the bucket is, for messages: `s3://bucket/prefix at ENDPOINT`. */
  get where(): string {
    return `s3://${this.cfg.bucket}/${this.cfg.prefix}${this.cfg.endpoint ? ` at ${this.cfg.endpoint}` : ` (region ${this.cfg.region})`}`;
  }

  /** The bucket's key of one of object-backend.ts's keys. */
  fullKey(key: string): string {
    return `${this.cfg.prefix}${key}`;
  }

  /** At start: the bucket must exist and answer; otherwise an error naming it and the endpoint. */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.cfg.bucket }));
    } catch (e) {
      throw new Error(`artifacts.s3: cannot use bucket "${this.cfg.bucket}"${this.cfg.endpoint ? ` at ${this.cfg.endpoint}` : ` in region ${this.cfg.region}`}: ${describe(e)}`);
    }
  }

  async put(key: string, open: () => Readable, meta: { size?: number; sha256?: string; contentType?: string }): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const body = open();
      try {
        const upload = new Upload({
          client: this.client, queueSize: QUEUE, partSize: PART_BYTES, leavePartsOnError: false,
          params: {
            Bucket: this.cfg.bucket, Key: this.fullKey(key), Body: body,
            ContentType: meta.contentType ?? 'application/octet-stream',
            ...(meta.sha256 ? { Metadata: { sha256: meta.sha256 } } : {}),
          },
        });
        await upload.done();
        return;
      } catch (e) {
        body.destroy();
        const client = e instanceof S3ServiceException && (e.$metadata.httpStatusCode ?? 500) < 500;
        if (attempt >= PUT_TRIES || client) throw new Error(`cannot store it in ${this.where}${attempt > 1 ? ` (${attempt} tries)` : ''}: ${describe(e)}`);
        await new Promise((ok) => setTimeout(ok, this.retryBaseMs * 4 ** (attempt - 1)));
      }
    }
  }

  async get(key: string): Promise<Readable | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.fullKey(key) }));
      return r.Body instanceof Readable ? r.Body : null;
    } catch (e) {
      if (e instanceof S3ServiceException && (e.name === 'NoSuchKey' || e.$metadata.httpStatusCode === 404)) return null;
      throw new Error(`cannot read it from ${this.where}: ${describe(e)}`);
    }
  }


  async remove(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const objects = keys.slice(i, i + 1000).map((k) => ({ Key: this.fullKey(k) }));
      await this.client.send(new DeleteObjectsCommand({ Bucket: this.cfg.bucket, Delete: { Objects: objects, Quiet: true } }));
    }
  }

  async removeOlderThan(kind: 'artifacts' | 'logs', cutoffMs: number): Promise<number> {
    let removed = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.cfg.bucket, Prefix: this.fullKey(`${kind}/`), ContinuationToken: token }));
      const old = (page.Contents ?? []).filter((o) => o.Key && o.LastModified && o.LastModified.getTime() < cutoffMs).map((o) => ({ Key: o.Key! }));
      if (old.length) {
        await this.client.send(new DeleteObjectsCommand({ Bucket: this.cfg.bucket, Delete: { Objects: old, Quiet: true } }));
        removed += old.length;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return removed;
  }

  close(): void {
    this.client.destroy();
  }
}

function describe(e: unknown): string {
  if (e instanceof S3ServiceException) return `${e.name}${e.$metadata.httpStatusCode ? ` (HTTP ${e.$metadata.httpStatusCode})` : ''}${e.message && e.message !== e.name ? `: ${e.message}` : ''}`;
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}: ${err.message}` : err.message ?? String(e);
}
