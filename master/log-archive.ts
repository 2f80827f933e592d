import { once } from 'node:events';
import { Readable, type Writable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import type { ArchivableLogs, BuildLogs, WorkerLogRange } from './log-store.js';
import { log } from './log.js';
import { logKey, type ObjectBackend } from './object-store/object-backend.js';

/** Tries of one build's archive before it waits for the next sweep. */
const ARCHIVE_TRIES = 4;
/** Puts of one archive (a log appended to while it was put is put again with the rest). */
const MAX_PUTS = 4;

/** Writes `from` into `to` (left open), minding backpressure. */
async function feed(from: Readable, to: Writable): Promise<void> {
  for await (const chunk of from) if (!to.write(chunk)) await once(to, 'drain');
}

/**
 * Finished builds' logs in the farm's object store (`artifacts: { s3 }`), so that any master
 * serves them, whatever held the build. Live logs stay where they are (`inner`: rows and files on one
 * master, log-store.ts; rows in the shared PostgreSQL, store/postgres-logs.ts); this wraps it.
 *
 * - When a build ends (`finish`) its log is put, in the background, as one gzip object
 *   (`logs/<id>.log.gz`, a key of the master's own build id): the object already there (if
 *   any) followed by the text `inner` holds, streamed through gzip — never the whole log in
 *   memory. Only once the object store has it is that text dropped from `inner`
 *   (`LogSource.release`); a put that fails leaves it there, is tried again with a backoff
 *   (ARCHIVE_TRIES), and then waits for `archiveLeftovers` (at start and with retention).
 * - A read is the object (if any) followed by what `inner` holds (text appended after the
 *   archive — a note after the end — or all of it while the build runs or the put fails).
 */
export class LogArchive implements BuildLogs {
  private readonly running = new Map<number, Promise<void>>();
  private readonly retries = new Set<NodeJS.Timeout>();
  private closed = false;
  readonly flush?: () => Promise<void>;
  readonly storedOffset?: (buildId: number, attempt: number) => Promise<number>;

  constructor(private readonly inner: ArchivableLogs, private readonly objects: ObjectBackend, private readonly retryBaseMs = 5000) {
    // The coordinator asks whether these exist (several masters): the same answer as inner's.
    if (inner.flush) this.flush = () => inner.flush!();
    if (inner.storedOffset) this.storedOffset = (b, a) => inner.storedOffset!(b, a);
  }

  append(buildId: number, data: string | Buffer, range?: WorkerLogRange): void {
    this.inner.append(buildId, data, range);
  }

  close(buildId: number): void {
    this.inner.close(buildId);
  }

  closeAll(): void {
    this.inner.closeAll();
  }

  finish(buildId: number): void {
    this.inner.finish(buildId);
    void this.archive(buildId);
  }

  /** Resolves when the archives under way (and inner's own work) are done. */
  async settled(): Promise<void> {
    await this.inner.settled();
    while (this.running.size) await Promise.all(this.running.values());
  }

  /** Stops retrying (shutdown); what is not archived stays in `inner` for the next start. */
  stop(): void {
    this.closed = true;
    for (const t of this.retries) clearTimeout(t);
    this.retries.clear();
  }

  /**
   * Puts one finished build's log in the object store; resolves true when it is there and
   * dropped from `inner`. Never rejects: a failure is logged and retried.
   */
  archive(buildId: number, tries = ARCHIVE_TRIES): Promise<boolean> {
    const had = this.running.get(buildId);
    if (had) return had.then(() => this.archive(buildId, tries));
    let ok = false;
    const job = this.archiveOnce(buildId).then(() => { ok = true; }, (e: Error) => {
      log.warn(`the log of build ${buildId} is not yet in ${this.objects.where} (kept on this master${tries > 1 ? ', tried again later' : ''}): ${e.message}`);
      if (tries > 1 && !this.closed) {
        const t = setTimeout(() => { this.retries.delete(t); void this.archive(buildId, tries - 1); }, this.retryBaseMs * 2 ** (ARCHIVE_TRIES - tries));
        t.unref();
        this.retries.add(t);
      }
    }).finally(() => this.running.delete(buildId));
    this.running.set(buildId, job);
    return job.then(() => ok);
  }

  private async archiveOnce(buildId: number): Promise<void> {
    // Each take is a snapshot (text appended later is not in it): another take finds the rest.
    for (let put = 0; put < MAX_PUTS; put++) {
      const source = await this.inner.take(buildId);
      if (!source) return;
      const key = logKey(buildId);
      // The object store's copy (if any), then the snapshot, gzip-compressed as it streams.
      await this.objects.put(key, () => {
        const gz = createGzip({ level: 6 });
        void (async () => {
          try {
            const prior = await this.objects.get(key);
            if (prior) await feed(prior.pipe(createGunzip()), gz);
            await feed(source.body(), gz);
            gz.end();
          } catch (e) {
            gz.destroy(e as Error);
          }
        })();
        return gz;
      }, { contentType: 'application/gzip' });
      if (!await source.release()) throw new Error('the text put could not be dropped here');
    }
    throw new Error(`the log kept growing while it was put (${MAX_PUTS} times)`);
  }

  /** Finished builds whose log is still (partly) in `inner`: archived now (at start, and with retention). */
  async archiveLeftovers(isFinished: (buildId: number) => Promise<boolean>): Promise<number> {
    let n = 0;
    for (const id of await this.inner.heldBuilds()) {
      if (this.running.has(id) || !await isFinished(id)) continue;
      if (await this.archive(id, 1)) n++;
    }
    return n;
  }

  read(buildId: number): Readable {
    return Readable.from(this.chunks(buildId, false));
  }

  /**
   * The log for the HTTP API: asks the object store first, so that a store that cannot
   * answer is an error (naming it) before any byte is sent.
   */
  async open(buildId: number): Promise<Readable> {
    const first = await this.objects.get(logKey(buildId));
    return Readable.from(this.chunks(buildId, true, first));
  }

  private async *chunks(buildId: number, strict: boolean, first?: Readable | null): AsyncGenerator<Buffer> {
    let object = first;
    if (object === undefined) {
      try {
        object = await this.objects.get(logKey(buildId));
      } catch (e) {
        if (strict) throw e;
        log.warn(`the log of build ${buildId}: ${(e as Error).message}; serving what this master holds`);
        object = null;
      }
    }
    if (object) for await (const chunk of object.pipe(createGunzip())) yield chunk as Buffer;
    const rest = this.inner.read(buildId);
    if (rest) for await (const chunk of rest) yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer;
  }
}
