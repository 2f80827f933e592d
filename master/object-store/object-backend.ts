import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';

/**
 * Where finished artifacts and logs are kept: an S3-compatible bucket every master of a farm reads (`S3Objects`,
 * `artifacts: { s3 }`). Without one, artifacts and logs stay on the master's own disk (or
 * the shared PostgreSQL's log rows), as before.
 *
 * Lifecycle: `check()` once at start (a missing or unreachable bucket stops the master, naming
 * it); then any number of `put`/`get`/`remove`; `removeOlderThan` from retention; `close()` at
 * shutdown. Keys are made only by `artifactKey`/`logKey` below, from the master's own ids.
 * A `put` streams its body (it never holds a whole artifact or log in memory) and resolves
 * only once the object is stored; it is safe to call again with a fresh body after a failure.
 */
export interface ObjectBackend {
  /** For messages: `s3://bucket/prefix at ENDPOINT`, or the directory. */
  readonly where: string;
  /** True when other masters read these objects too (a bucket); false for this disk. */
  readonly shared: boolean;
  check(): Promise<void>;
  /** Stores the body `open()` gives (called once a try: a stream cannot be sent twice). */
  put(key: string, open: () => Readable, meta: { size?: number; sha256?: string; contentType?: string }): Promise<void>;
  /** The object's bytes, or null when there is no such object. Throws (naming `where`) when the store cannot answer. */
  get(key: string): Promise<Readable | null>;
  remove(keys: string[]): Promise<void>;
  /** Removes the objects under `kind/` stored before `cutoffMs`; returns how many. */
  removeOlderThan(kind: 'artifacts' | 'logs', cutoffMs: number): Promise<number>;
  close(): void;
}

/** S3 allows 1024 bytes a key; a name whose encoded form is longer than this is named by its hash. */
const MAX_NAME_SEGMENT = 600;

/**
 * The key segment of an artifact name. The name is one `protocol/worker-messages.ts` allowed
 * (1–255 characters, no `/` or `\`, not `.` or `..`) and the builder's `artifacts:` patterns
 * produce (`worker-bounds.ts`), but the key does not rely on that: it is URI-encoded, so it is
 * one segment whatever it holds (`../x`, `/etc/passwd`, `?`, `#`, `%`, unicode), and a name
 * whose encoding would be too long for S3 is `=sha256=HEX` of the name — `=` is never left
 * unescaped by encodeURIComponent, so no name can encode to another name's hashed segment.
 */
export function nameSegment(name: string): string {
  if (name.length === 0) throw new Error('an artifact name cannot be empty');
  const encoded = encodeURIComponent(name);
  return encoded.length <= MAX_NAME_SEGMENT ? encoded : `=sha256=${createHash('sha256').update(name).digest('hex')}`;
}

function checkId(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got ${n}`);
}

/**
 * `artifacts/<build id>/<attempt>/<name segment>`: the build id and attempt are the master's
 * own numbers (the build row's, the attempt the coordinator fenced the upload by), never text a
 * worker sent. A row from before attempts were recorded (attempt null) has no attempt segment.
 * The attempt is in the key so that an attempt's late put can never replace a later attempt's
 * bytes under the same name (several masters may hold a build's attempts one after another).
 */
export function artifactKey(buildId: number, name: string, attempt: number | null | undefined): string {
  checkId('a build id', buildId);
  if (attempt === null || attempt === undefined) return `artifacts/${buildId}/${nameSegment(name)}`;
  checkId('an attempt', attempt);
  return `artifacts/${buildId}/${attempt}/${nameSegment(name)}`;
}

/** `logs/<build id>.log.gz`: a finished build's whole log, gzip-compressed. */
export function logKey(buildId: number): string {
  checkId('a build id', buildId);
  return `logs/${buildId}.log.gz`;
}
