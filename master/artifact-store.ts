import { createHash, type Hash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import { log } from './log.js';
import { artifactKey, nameSegment, type ObjectBackend } from './object-store/object-backend.js';

export interface ArtifactChunk {
  buildId: number;
  name: string;
  size: number;
  sha256: string;
  offset: number;
  data: Buffer;
  last: boolean;
  /** The attempt the coordinator fenced this upload by (its object key has it); absent in older callers. */
  attempt?: number;
}

interface Upload {
  fd: number;
  hash: Hash;
  written: number;
  size: number;
  sha256: string;
  partial: string;
  buildId: number;
  name: string;
  attempt: number | undefined;
  /** When the last chunk arrived (ms since the epoch). */
  lastAt: number;
}

/** How long a client may use a presigned download URL (`presignedDownloads`). */
export const PRESIGNED_URL_SECONDS = 300;

/**
 * Artifacts as files, `DATA/artifacts/<build>/<name>`, received in ordered chunks and
 * checked against the size and sha256 the worker announced before they become visible.
 *
 * With a shared object store (`artifacts: { s3 }`, object-store/s3-objects.ts) this disk is
 * only where an upload is received and checked: the caps (`maxBytes` here, the per-attempt
 * count and bytes in worker-bounds.ts) are enforced chunk by chunk as it arrives, so nothing
 * over them is ever put; once whole and verified the file is put in the bucket (streamed from
 * the file) and only then listed, and removed from this disk once the bucket has it. A put that
 * fails after its tries leaves the verified file where it is and is refused naming the bucket.
 * Reads: this disk's copy (an upload whose put failed, or the store is this disk), else the bucket.
 */
export class ArtifactStore {
  private readonly dir: string;
  private readonly cacheDir: string;
  private readonly uploads = new Map<string, Upload>();
  /** Verified uploads of running builds: the attempt each was received for (its key; forgotten at abortBuild). */
  private readonly verified = new Map<string, number | undefined>();

  /**
   * `objects`: the farm's shared store; absent: this disk only. `presignedDownloads`: a
   * download is answered with a redirect to a presigned URL of the bucket (default off).
   */
  constructor(dataDir: string, private readonly maxBytes: number, private readonly objects?: ObjectBackend, private readonly presignedDownloads = false) {
    this.dir = join(dataDir, 'artifacts');
    this.cacheDir = join(dataDir, 'artifact-cache');
    mkdirSync(this.dir, { recursive: true });
  }

  path(buildId: number, name: string): string {
    return join(this.dir, String(buildId), name);
  }

  /** Takes one chunk; returns true when the artifact is complete and verified. Throws with a clear message on any mismatch. */
  receive(c: ArtifactChunk): boolean {
    const key = `${c.buildId}/${c.name}`;
    let up = this.uploads.get(key);
    if (!up) {
      if (c.offset !== 0) throw new Error(`artifact ${c.name}: first chunk at offset ${c.offset}, expected 0`);
      if (c.size > this.maxBytes) throw new Error(`artifact ${c.name}: ${c.size} bytes exceeds the limit of ${this.maxBytes}`);
      mkdirSync(join(this.dir, String(c.buildId)), { recursive: true });
      const partial = `${this.path(c.buildId, c.name)}.partial`;
      up = { fd: openSync(partial, 'w'), hash: createHash('sha256'), written: 0, size: c.size, sha256: c.sha256, partial, buildId: c.buildId, name: c.name, attempt: c.attempt, lastAt: Date.now() };
      this.uploads.set(key, up);
    }
    try {
      if (c.offset !== up.written) throw new Error(`artifact ${c.name}: chunk at offset ${c.offset}, expected ${up.written}`);
      if (c.size !== up.size || c.sha256 !== up.sha256) throw new Error(`artifact ${c.name}: size or sha256 changed during upload`);
      if (up.written + c.data.length > up.size) throw new Error(`artifact ${c.name}: more bytes than the announced ${up.size}`);
      writeSync(up.fd, c.data);
      up.lastAt = Date.now();
      up.hash.update(c.data);
      up.written += c.data.length;
      if (!c.last) return false;
      if (up.written !== up.size) throw new Error(`artifact ${c.name}: got ${up.written} bytes, announced ${up.size}`);
      const digest = up.hash.digest('hex');
      if (digest !== up.sha256) throw new Error(`artifact ${c.name}: sha256 mismatch (announced ${up.sha256}, received ${digest})`);
      closeSync(up.fd);
      renameSync(up.partial, this.path(c.buildId, c.name));
      this.uploads.delete(key);
      this.verified.set(key, up.attempt);
      return true;
    } catch (e) {
      this.abort(c.buildId, c.name);
      throw e;
    }
  }

  /** Drops unfinished uploads of a build (worker gone, build cancelled). */
  abortBuild(buildId: number): void {
    for (const key of [...this.verified.keys()]) if (key.startsWith(`${buildId}/`)) this.verified.delete(key);
    for (const key of [...this.uploads.keys()]) {
      if (key.startsWith(`${buildId}/`)) this.abort(buildId, key.slice(String(buildId).length + 1));
    }
  }

  /**
   * Drops the uploads that got no chunk for `stallMs` (their descriptor closed, their
   * `.partial` removed) and names them: a worker cannot hold the master's descriptors or
   * disk with uploads it never finishes.
   */
  dropStalled(stallMs: number, now = Date.now()): { buildId: number; name: string }[] {
    const out: { buildId: number; name: string }[] = [];
    for (const up of [...this.uploads.values()]) {
      if (now - up.lastAt < stallMs) continue;
      this.abort(up.buildId, up.name);
      out.push({ buildId: up.buildId, name: up.name });
    }
    return out;
  }

  /** How many uploads are open (each holds a descriptor and a `.partial` file). */
  get openUploads(): number {
    return this.uploads.size;
  }

  private abort(buildId: number, name: string): void {
    const key = `${buildId}/${name}`;
    const up = this.uploads.get(key);
    if (!up) return;
    this.uploads.delete(key);
    try { closeSync(up.fd); } catch { /* already closed */ }
    rmSync(up.partial, { force: true });
  }

  /**
   * Removes a stored artifact's bytes (an attempt refused after its upload: they are never
   * served) — this disk's copy, and the bucket's object of that attempt, in the background.
   */
  discard(buildId: number, name: string, attempt?: number): void {
    rmSync(this.path(buildId, name), { force: true });
    const objects = this.objects;
    if (!objects?.shared) return;
    const key = artifactKey(buildId, name, attempt ?? this.verified.get(`${buildId}/${name}`));
    objects.remove([key]).catch((e: Error) => log.warn(`artifact ${name} of build ${buildId}: cannot remove it from ${objects.where} (retention will): ${e.message}`));
  }

  /**
   * A verified artifact becomes the farm's: with a shared store it is put there before it is
   * listed (any master then serves it), under the key of the master's own ids — the build id,
   * the attempt the upload was fenced by, the name in one encoded segment (object-backend.ts):
   * never a path the worker sent. Throws naming the bucket when that fails; the file stays on
   * this disk (and is served from it by this master; the store's retention removes it).
   */
  async publish(buildId: number, name: string, size: number, sha256: string): Promise<void> {
    const objects = this.objects;
    const id = `${buildId}/${name}`;
    if (!objects?.shared) return;
    const file = this.path(buildId, name);
    await objects.put(artifactKey(buildId, name, this.verified.get(id)), () => createReadStream(file), { size, sha256 });
    rmSync(file, { force: true });
  }

  /** The artifact's bytes: this master's copy, else the shared store's; null when neither has it. */
  async read(buildId: number, name: string, attempt?: number | null): Promise<Readable | null> {
    const p = this.path(buildId, name);
    if (existsSync(p)) return createReadStream(p);
    return this.objects ? this.objects.get(artifactKey(buildId, name, attempt)) : null;
  }

  /**
   * With `presignedDownloads`: a URL of the bucket the client may fetch the artifact from
   * itself for PRESIGNED_URL_SECONDS (the master's bandwidth is spared); null otherwise, or
   * when this master still holds the only copy (its put failed).
   */
  async downloadUrl(buildId: number, name: string, attempt?: number | null): Promise<string | null> {
    if (!this.presignedDownloads || !this.objects || existsSync(this.path(buildId, name))) return null;
    return this.objects.presignedUrl(artifactKey(buildId, name, attempt), name, PRESIGNED_URL_SECONDS);
  }

  /**
   * A path to the artifact on this disk, or null (for diffoscope): this master's copy, else
   * one fetched from the shared store into `DATA/artifact-cache/<build>/<attempt>/`.
   */
  async localPath(buildId: number, name: string, attempt?: number | null): Promise<string | null> {
    const p = this.path(buildId, name);
    if (existsSync(p)) return p;
    if (!this.objects) return null;
    const cached = join(this.cacheDir, String(buildId), String(attempt ?? 0), nameSegment(name));
    if (existsSync(cached)) return cached;
    const body = await this.objects.get(artifactKey(buildId, name, attempt));
    if (!body) return null;
    mkdirSync(dirname(cached), { recursive: true });
    const tmp = `${cached}.download`;
    try {
      await pipeline(body, createWriteStream(tmp));
      renameSync(tmp, cached);
      return cached;
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }
}
