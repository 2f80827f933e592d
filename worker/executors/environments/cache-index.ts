import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withFileLock } from './file-lock.js';

/**
 * CACHE_DIR/index.json: when each environment image was last used, and its parent layer (so
 * eviction knows which images stack on which). Podman labels cannot change after an image is
 * made, so the last-used time lives here. Every change is a read-modify-write under a lock
 * file, written to a temporary file and renamed, so concurrent workers never lose each
 * other's updates or see a half-written file.
 */

export interface IndexEntry {
  /** ms since the epoch */
  lastUsed: number;
  /** The image this one was made from, if it is a setup layer. */
  parent: string | null;
  /** "busybox + 2 setup steps", for eviction messages. */
  environment: string;
}

export type IndexEntries = Record<string, IndexEntry>;

interface IndexFile {
  version: 1;
  images: IndexEntries;
}

export class CacheIndex {
  readonly file: string;

  constructor(readonly dir: string) {
    this.file = join(dir, 'index.json');
  }

  /** Runs `change` on the current entries under the index lock and saves what it leaves. */
  async update<T>(change: (entries: IndexEntries) => Promise<T> | T): Promise<T> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    return withFileLock(this.dir, 'index', async () => {
      const entries = await this.read();
      const result = await change(entries);
      const tmp = `${this.file}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify({ version: 1, images: entries } satisfies IndexFile, null, 1)}\n`);
      await rename(tmp, this.file);
      return result;
    });
  }

  /** Marks the images as used now (creating their entries). */
  touch(images: ReadonlyArray<{ ref: string; parent: string | null }>, environment: string, now = Date.now()): Promise<void> {
    return this.update((entries) => {
      for (const { ref, parent } of images) entries[ref] = { lastUsed: now, parent, environment };
    });
  }

  /** The entries on disk; a missing or unreadable index is empty (it is only a cache). */
  async read(): Promise<IndexEntries> {
    const text = await readFile(this.file, 'utf8').catch(() => null);
    if (text === null) return {};
    try {
      const parsed = JSON.parse(text) as Partial<IndexFile>;
      const out: IndexEntries = {};
      for (const [ref, e] of Object.entries(parsed.images ?? {})) {
        if (typeof e?.lastUsed === 'number') {
          out[ref] = { lastUsed: e.lastUsed, parent: typeof e.parent === 'string' ? e.parent : null, environment: String(e.environment ?? '') };
        }
      }
      return out;
    } catch {
      return {};
    }
  }
}
