import { createHash, type Hash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { artifactKey, type ObjectBackend } from './object-store/object-backend.js';

export interface ArtifactChunk {
  buildId: number;
  name: string;
  size: number;
  sha256: string;
  offset: number;
  data: Buffer;
  last: boolean;
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
  /** When the last chunk arrived (ms since the epoch). */
  lastAt: number;
}

/**
 * Artifacts as files, `DATA/artifacts/<build>/<name>`, received in ordered chunks and
 * checked against the size and sha256 the worker announced before they become visible.
 */
export class ArtifactStore {
  private readonly dir: string;
  private readonly uploads = new Map<string, Upload>();

  /** `objects`: the farm's bucket (object-store/s3-objects.ts); absent: this disk only. Keys: artifactKey, from the master's own build id and the name as one encoded segment. */
  constructor(dataDir: string, private readonly maxBytes: number, private readonly objects?: ObjectBackend) {
    this.dir = join(dataDir, 'artifacts');
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
      up = { fd: openSync(partial, 'w'), hash: createHash('sha256'), written: 0, size: c.size, sha256: c.sha256, partial, buildId: c.buildId, name: c.name, lastAt: Date.now() };
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
      return true;
    } catch (e) {
      this.abort(c.buildId, c.name);
      throw e;
    }
  }

  /** Drops unfinished uploads of a build (worker gone, build cancelled). */
  abortBuild(buildId: number): void {
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

  /** Removes a stored artifact's bytes (an attempt refused after its upload: they are never served). */
  discard(buildId: number, name: string): void {
    rmSync(this.path(buildId, name), { force: true });
  }

  /**
   * A verified artifact becomes the farm's: with a bucket, it is put there before it is
   * listed (any master then serves it). Throws naming the bucket when that fails; the file
   * stays on this disk.
   */
  async publish(buildId: number, name: string, size: number, sha256: string): Promise<void> {
    const file = this.path(buildId, name);
    await this.objects?.put(artifactKey(buildId, name, null), () => createReadStream(file), { size, sha256 });
  }

  /** The artifact's bytes: this master's copy, else the bucket's; null when neither has it. */
  async read(buildId: number, name: string): Promise<Readable | null> {
    const p = this.path(buildId, name);
    if (existsSync(p)) return createReadStream(p);
    return this.objects ? this.objects.get(artifactKey(buildId, name, null)) : null;
  }

  /** A path to the artifact on this disk (fetched from the bucket if this master has no copy), or null. */
  async localPath(buildId: number, name: string): Promise<string | null> {
    const p = this.path(buildId, name);
    if (existsSync(p)) return p;
    const body = this.objects ? await this.objects.get(artifactKey(buildId, name, null)) : null;
    if (!body) return null;
    const tmp = `${p}.download`;
    mkdirSync(dirname(p), { recursive: true });
    try {
      await pipeline(body, createWriteStream(tmp));
      renameSync(tmp, p);
      return p;
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }
}
