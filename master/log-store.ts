import { closeSync, createReadStream, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, createGunzip } from 'node:zlib';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { log } from './log.js';

/**
 * Build logs as plain files, `DATA/logs/<id>.log`, appended as chunks arrive. Writes are
 * small synchronous appends to an open descriptor, so memory stays flat however much a
 * build prints, and the log on disk is complete up to the last chunk received. When a build
 * ends, a log of at least COMPRESS_MIN_BYTES is compressed in the background to `<id>.log.gz`;
 * reads serve either form. Smaller logs stay plain: compressing them saves little disk, and its
 * file and zlib work was the largest cost per short build in a profile of the master
 * (bench/README.md).
 */
export const COMPRESS_MIN_BYTES = 64 * 1024;

/** Where a worker's text sits in its attempt's log (FEATURE_LOG_ACK offsets, UTF-16 code units). */
export interface WorkerLogRange {
  attempt: number;
  from: number;
  length: number;
}

/**
 * What the coordinator and the HTTP API need of build logs: files on one master (LogStore),
 * rows in the farm's PostgreSQL with several (store/postgres-logs.ts).
 */
export interface BuildLogs {
  /** Appends text; `range` is set for a worker's text (the shared store fences and acknowledges it). */
  append(buildId: number, data: string | Buffer, range?: WorkerLogRange): void;
  close(buildId: number): void;
  finish(buildId: number): void;
  read(buildId: number): Readable | null;
  closeAll(): void;
  settled(): Promise<void>;
  /** Several masters: resolves when what was appended is in the farm's store. Absent on one master (appends are written at once). */
  flush?(): Promise<void>;
  /** Several masters: how much of an attempt's log the farm's store holds (where an adopted attempt goes on). Absent on one master. */
  storedOffset?(buildId: number, attempt: number): Promise<number>;
}

/**
 * What log-archive.ts needs to move a finished build's log to a shared object store: the text
 * held now, and a way to drop exactly that text once the object store has it. Text appended
 * after `take` (a note after the end) stays, and is served after the object.
 */
export interface LogSource {
  /** The text held now (plain). */
  body(): Readable;
  /** Drops what `body` gave; false when that cannot be done safely now (the caller tries again). */
  release(): Promise<boolean>;
}

export interface ArchivableLogs extends BuildLogs {
  /** The build's log as held now, or null when there is none. */
  take(buildId: number): Promise<LogSource | null>;
  /** Builds that have log text here (candidates for archiving once finished). */
  heldBuilds(): Promise<number[]>;
}

export class LogStore implements ArchivableLogs {
  private readonly dir: string;
  private readonly open = new Map<number, number>();
  private readonly compressing = new Map<number, Promise<void>>();

  /** `onBytes`: told how many bytes each append stored (the master's metrics). */
  constructor(dataDir: string, private readonly compress = true, private readonly onBytes?: (n: number) => void) {
    this.dir = join(dataDir, 'logs');
    mkdirSync(this.dir, { recursive: true });
  }

  path(buildId: number): string {
    return join(this.dir, `${buildId}.log`);
  }

  append(buildId: number, data: string | Buffer): void {
    let fd = this.open.get(buildId);
    if (fd === undefined) {
      fd = openSync(this.path(buildId), 'a');
      this.open.set(buildId, fd);
    }
    const n = typeof data === 'string' ? writeSync(fd, data) : writeSync(fd, data);
    this.onBytes?.(n);
  }

  /** Closes the file of a build that is no longer running. More appends reopen it. */
  close(buildId: number): void {
    const fd = this.open.get(buildId);
    if (fd !== undefined) {
      closeSync(fd);
      this.open.delete(buildId);
    }
  }

  /** The build has ended for good: close its log and compress it in the background. */
  finish(buildId: number): void {
    this.close(buildId);
    if (!this.compress || this.compressing.has(buildId)) return;
    const size = statSync(this.path(buildId), { throwIfNoEntry: false })?.size;
    if (size === undefined || size < COMPRESS_MIN_BYTES) return;
    const plain = this.path(buildId);
    const tmp = `${plain}.gz.tmp`;
    const job = pipeline(createReadStream(plain), createGzip({ level: 6 }), createWriteStream(tmp))
      .then(() => {
        // Appended to meanwhile (a requeue reopened it)? Keep the plain file; it is compressed at the next end.
        if (this.open.has(buildId)) { rmSync(tmp, { force: true }); return; }
        renameSync(tmp, `${plain}.gz`);
        rmSync(plain, { force: true });
      })
      .catch((e: Error) => {
        rmSync(tmp, { force: true });
        log.error(`compressing the log of build ${buildId} failed: ${e.message}`);
      })
      .finally(() => this.compressing.delete(buildId));
    this.compressing.set(buildId, job);
  }

  /** Resolves when every background compression has finished (for shutdown and tests). */
  async settled(): Promise<void> {
    await Promise.all(this.compressing.values());
  }

  /** The log's text so far, plain or decompressed; null when the build has none. */
  read(buildId: number): Readable | null {
    const current = this.readCurrent(buildId);
    // A snapshot being put in the object store (log-archive.ts) comes first.
    const snapshot = this.snapshotOf(buildId);
    if (!snapshot) return current;
    const first = snapshot.endsWith('.gz.archiving') ? createReadStream(snapshot).pipe(createGunzip()) : createReadStream(snapshot);
    return Readable.from((async function* () {
      yield* first;
      if (current) yield* current;
    })());
  }

  private readCurrent(buildId: number): Readable | null {
    const plain = this.path(buildId);
    if (existsSync(plain)) return createReadStream(plain);
    const gz = `${plain}.gz`;
    if (existsSync(gz)) return createReadStream(gz).pipe(createGunzip());
    return null;
  }

  closeAll(): void {
    for (const id of [...this.open.keys()]) this.close(id);
  }

  /**
   * For the object store (log-archive.ts): the log as it is now, after its compression, moved
   * aside to `<id>.log[.gz].archiving` in one synchronous step (its descriptor closed first), so
   * an append that comes later starts a new file and is never in the snapshot; `release`
   * removes the snapshot. A snapshot left by a put that failed is taken again as it is.
   */
  async take(buildId: number): Promise<LogSource | null> {
    await this.compressing.get(buildId);
    let snapshot = this.snapshotOf(buildId);
    if (!snapshot) {
      const plain = this.path(buildId);
      const from = existsSync(plain) ? plain : existsSync(`${plain}.gz`) ? `${plain}.gz` : null;
      if (!from) return null;
      this.close(buildId);
      snapshot = `${from}.archiving`;
      renameSync(from, snapshot);
    }
    const file = snapshot;
    return {
      body: () => (file.endsWith('.gz.archiving') ? createReadStream(file).pipe(createGunzip()) : createReadStream(file)),
      release: () => { rmSync(file, { force: true }); return Promise.resolve(true); },
    };
  }

  private snapshotOf(buildId: number): string | null {
    const plain = `${this.path(buildId)}.archiving`;
    const gz = `${this.path(buildId)}.gz.archiving`;
    return existsSync(gz) ? gz : existsSync(plain) ? plain : null;
  }

  heldBuilds(): Promise<number[]> {
    const ids = new Set<number>();
    for (const name of readdirSync(this.dir)) {
      const m = /^([1-9][0-9]*)\.log(?:\.gz)?(?:\.archiving)?$/.exec(name);
      if (m) ids.add(Number(m[1]));
    }
    return Promise.resolve([...ids]);
  }
}
