import { createReadStream, createWriteStream, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectsCommand, GetObjectCommand, HeadBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { S3ArtifactsConfig } from './config/s3-config.js';

/**
 * Artifacts in an S3-compatible bucket (`artifacts: { s3: … }` in crowdbake.yml), through the
 * AWS SDK v3, so that every master of a farm serves every build's artifacts. The master
 * receives an upload to its own disk as before (checked chunk by chunk against the size and
 * sha256 the worker announced, artifact-store.ts); once whole and verified it is put in the
 * bucket, streamed from the file, and only then listed. Reads go to the local copy when this
 * master has one, else to the bucket.
 *
 * Keys are the master's own: `PREFIX` + `artifacts/<build id>/<name, URI-encoded>`. The build id
 * is the master's number; the name is one the builder's `artifacts:` patterns allowed
 * (worker-bounds.ts), and encoding it means no name — `../x`, `a/b`, `?`, `#`, unicode — can
 * reach another build's keys or change the request. Credentials come only from the SDK's
 * standard chain (s3-config.ts refuses keys in the file).
 */
/** Tries of one put before the artifact is refused. */
const PUT_TRIES = 3;

export class S3Artifacts {
  private readonly client: S3Client;

  constructor(private readonly cfg: S3ArtifactsConfig) {
    this.client = new S3Client({
      region: cfg.region, forcePathStyle: cfg.forcePathStyle, maxAttempts: 3,
      // Puts are retried here (put()), reads and lists by the SDK.
      // Checksums only where S3 requires them: the SDK's default streams a body as aws-chunked
      // with a trailing checksum, which many S3-compatible services store as it came (framing
      // and all). The master checked the sha256 itself before the put, and keeps it as metadata.
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
      ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
    });
  }

  /** Where the bucket is, for messages: `s3://bucket/prefix at ENDPOINT`. */
  get where(): string {
    return `s3://${this.cfg.bucket}/${this.cfg.prefix}${this.cfg.endpoint ? ` at ${this.cfg.endpoint}` : ` (region ${this.cfg.region})`}`;
  }

  key(buildId: number, name: string): string {
    return `${this.cfg.prefix}artifacts/${buildId}/${encodeURIComponent(name)}`;
  }

  /** At start: the bucket must exist and answer; otherwise an error naming it and the endpoint. */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.cfg.bucket }));
    } catch (e) {
      throw new Error(`artifacts.s3: cannot use bucket "${this.cfg.bucket}"${this.cfg.endpoint ? ` at ${this.cfg.endpoint}` : ` in region ${this.cfg.region}`}: ${describe(e)}`);
    }
  }

  /** Puts a verified artifact's file in the bucket (streamed, with its size and sha256 as metadata). */
  async put(buildId: number, name: string, file: string, size: number, sha256: string): Promise<void> {
    // A streamed body cannot be sent again by the SDK: each try opens the file anew (3 tries).
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.send(new PutObjectCommand({
          Bucket: this.cfg.bucket, Key: this.key(buildId, name), Body: createReadStream(file), ContentLength: size,
          ContentType: 'application/octet-stream', Metadata: { sha256 },
        }));
        return;
      } catch (e) {
        const client = e instanceof S3ServiceException && (e.$metadata.httpStatusCode ?? 500) < 500;
        if (attempt >= PUT_TRIES || client) throw new Error(`cannot store it in ${this.where}${attempt > 1 ? ` (${attempt} tries)` : ''}: ${describe(e)}`);
        await new Promise((ok) => setTimeout(ok, 250 * 4 ** (attempt - 1)));
      }
    }
  }

  /** The artifact's bytes from the bucket, or null when it has no such object. */
  async get(buildId: number, name: string): Promise<Readable | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(buildId, name) }));
      return r.Body instanceof Readable ? r.Body : null;
    } catch (e) {
      if (e instanceof S3ServiceException && (e.name === 'NoSuchKey' || e.$metadata.httpStatusCode === 404)) return null;
      throw new Error(`cannot read it from ${this.where}: ${describe(e)}`);
    }
  }

  /** Copies the artifact to `file` (for diffoscope); false when the bucket has no such object. */
  async download(buildId: number, name: string, file: string): Promise<boolean> {
    const body = await this.get(buildId, name);
    if (!body) return false;
    mkdirSync(dirname(file), { recursive: true });
    const tmp = `${file}.download`;
    try {
      await pipeline(body, createWriteStream(tmp));
      renameSync(tmp, file);
      return true;
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }

  /** Removes the objects stored before `cutoffMs` (retention); returns how many. */
  async removeOlderThan(cutoffMs: number): Promise<number> {
    let removed = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.cfg.bucket, Prefix: `${this.cfg.prefix}artifacts/`, ContinuationToken: token }));
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
