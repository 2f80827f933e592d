import type Database from 'better-sqlite3';
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, createGunzip } from 'node:zlib';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { log } from './log.js';
import { openSqlite } from './store/sqlite-open.js';

/**
 * Build logs on one master, in `DATA/logs/`. The first HEAD_BYTES of each build's log are rows
 * of a small SQLite database (`logs.db`, one row per chunk, in the order received, as
 * BuildBot's logchunks); what follows goes to a plain file, `<id>.log`, appended as chunks
 * arrive. Most builds' logs are short, and a file made and later removed for each cost the
 * master more than the rest of its log path (bench/README.md); a long log is one file, however
 * much a build prints, so memory stays flat. Both are written synchronously as each chunk
 * arrives (an autocommitted row in WAL mode, or a write to the open descriptor), so what was
 * received is kept across a crash of the master either way.
 *
 * When a build ends, a file of at least COMPRESS_MIN_BYTES is compressed in the background to
 * `<id>.log.gz`; reads serve either form after the rows.
 */
export const HEAD_BYTES = 64 * 1024;
/**
 * At most this many rows a build: each is a commit (a WAL page written), so a worker sending
 * its log a byte a frame gets a few hundred commits, then the file's cheap appends.
 */
export const HEAD_ROWS = 256;
export const COMPRESS_MIN_BYTES = 64 * 1024;

/** Where a worker's text sits in its attempt's log (FEATURE_LOG_ACK offsets, UTF-16 code units). */
export interface WorkerLogRange {
  attempt: number;
  from: number;
  length: number;
}

/**
 * What the coordinator and the HTTP API need of build logs: rows and files on one master (LogStore),
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
  private readonly dbFile: string;
  private database: ReturnType<typeof prepare> | undefined;
  /** Builds whose text goes to their file (a descriptor held while they run). */
  private readonly open = new Map<number, number>();
  /** The rows of builds whose log is still all rows (known once appended to since start). */
  private readonly heads = new Map<number, Head>();
  /**
   * Builds that have (or had) a file part: their text goes to the file from then on, so rows
   * stay the log's beginning. Read from the directory at start, then kept here (no stat per build).
   */
  private readonly filed = new Set<number>();
  private readonly compressing = new Map<number, Promise<void>>();
  /** Builds' ends (ms) not yet noted in the database (its disk was full): noteEnds. */
  private readonly unnoted = new Map<number, number>();
  /** Rows already in the object store (up to this rowid) whose delete the database refused: not served again, deleted by noteEnds. */
  private readonly released = new Map<number, number>();

  /** `onBytes`: told how many bytes each append stored (the master's metrics). */
  constructor(dataDir: string, private readonly compress = true, private readonly onBytes?: (n: number) => void) {
    this.dir = join(dataDir, 'logs');
    this.dbFile = join(this.dir, 'logs.db');
    mkdirSync(this.dir, { recursive: true });
    void this.db; // a database that cannot be opened is an error at start, naming the file
    this.recover();
  }

  /**
   * At start: notes which builds have a file part, and mends what a crash of finish's
   * compression left: a `.gz.tmp` (its source is still there) is removed, and so is a plain
   * file older than the `.gz` beside it (the compression's source, between the rename and the
   * removal: the `.gz` holds all of it; a note appended after the end is newer, and stays).
   */
  private recover(): void {
    for (const name of readdirSync(this.dir)) {
      const m = /^([1-9][0-9]*)\.log(\.gz)?(\.tmp|\.archiving)?$/.exec(name);
      if (!m) continue;
      const file = join(this.dir, name);
      if (m[3] === '.tmp') { rmSync(file, { force: true }); continue; }
      this.filed.add(Number(m[1]));
      if (m[2] || m[3]) continue;
      const gz = statSync(`${file}.gz`, { throwIfNoEntry: false });
      // Strictly older: a note in the same clock tick as the .gz is kept (served twice, never lost).
      if (gz && statSync(file).mtimeMs < gz.mtimeMs) rmSync(file, { force: true });
    }
  }

  /** The file that holds a build's text after its first HEAD_BYTES (it may not exist). */
  path(buildId: number): string {
    return join(this.dir, `${buildId}.log`);
  }

  private get db(): ReturnType<typeof prepare> {
    if (this.database) return this.database;
    const db = openSqlite(this.dbFile, 'the log database');
    try {
      db.exec(`CREATE TABLE IF NOT EXISTS chunks (build_id INTEGER NOT NULL, data BLOB NOT NULL);
        CREATE INDEX IF NOT EXISTS chunks_build ON chunks (build_id);
        CREATE TABLE IF NOT EXISTS ended (build_id INTEGER PRIMARY KEY, at INTEGER NOT NULL);`);
    } catch (e) {
      db.close();
      throw Object.assign(new Error(`cannot open the log database ${this.dbFile}: ${(e as Error).message}`), { code: (e as { code?: string }).code });
    }
    this.database = prepare(db);
    return this.database;
  }

  append(buildId: number, data: string | Buffer): void {
    let fd = this.open.get(buildId);
    if (fd === undefined) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      const head = this.filed.has(buildId) ? null : this.heads.get(buildId) ?? this.db.head.get(buildId) as Head;
      if (head && head.rows < HEAD_ROWS && head.bytes + bytes.length <= HEAD_BYTES) {
        this.db.insert.run(buildId, bytes);
        this.heads.set(buildId, { rows: head.rows + 1, bytes: head.bytes + bytes.length });
        this.onBytes?.(bytes.length);
        return;
      }
      // The head is full (or a file part exists already): this text and all that follows go to the file.
      this.heads.delete(buildId);
      this.filed.add(buildId);
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

  /** The build has ended for good: note when (retention), close its file and compress it in the background. */
  finish(buildId: number, now = Date.now()): void {
    this.close(buildId);
    this.heads.delete(buildId);
    this.unnoted.set(buildId, now);
    this.noteEnds();
    if (!this.compress || this.compressing.has(buildId)) return;
    const plain = this.path(buildId);
    const size = statSync(plain, { throwIfNoEntry: false })?.size;
    if (size === undefined || size < COMPRESS_MIN_BYTES || existsSync(`${plain}.gz`)) return;
    const tmp = `${plain}.gz.tmp`;
    const job = pipeline(createReadStream(plain), createGzip({ level: 6 }), createWriteStream(tmp))
      .then(() => {
        // Appended to meanwhile (a requeue reopened it, a note after the end, even one whose file
        // was closed again)? Keep the plain file; it is compressed at the next end.
        if (this.open.has(buildId) || statSync(plain, { throwIfNoEntry: false })?.size !== size) { rmSync(tmp, { force: true }); return; }
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

  /**
   * Notes the ends not noted yet. A note refused (a full disk) must not stop the build's end
   * from being stored: it waits here, tried again at the next end and before retention, and
   * until then only retention does not know this log.
   */
  private noteEnds(): void {
    try {
      for (const [id, at] of this.unnoted) {
        this.db.ended.run(id, at);
        this.unnoted.delete(id);
      }
      for (const [id, last] of this.released) {
        this.db.deleteUpTo.run(id, last);
        this.released.delete(id);
      }
    } catch (e) {
      log.warn(`cannot write to the log database ${this.dbFile} yet (tried again at the next end): ${(e as Error).message}`);
    }
  }

  /** Resolves when every background compression has finished (for shutdown and tests). */
  async settled(): Promise<void> {
    await Promise.all(this.compressing.values());
  }

  /** The log's text so far (its rows, then its file, plain or decompressed); null when the build has none. */
  read(buildId: number): Readable | null {
    const head = this.headRows(buildId).map((r) => r.data);
    // A snapshot being put in the object store (log-archive.ts) comes before the current file.
    const snapshot = this.snapshotOf(buildId);
    const current = this.readCurrent(buildId);
    if (!snapshot && !current) return head.length > 0 ? Readable.from(head) : null;
    const first = snapshot && (snapshot.endsWith('.gz.archiving') ? createReadStream(snapshot).pipe(createGunzip()) : createReadStream(snapshot));
    return Readable.from((async function* () {
      yield* head;
      if (first) yield* first;
      if (current) yield* current;
    })());
  }

  private headRows(buildId: number): { id: number; data: Buffer }[] {
    const rows = this.db.rows.all(buildId) as { id: number; data: Buffer }[];
    const gone = this.released.get(buildId);
    return gone === undefined ? rows : rows.filter((r) => r.id > gone);
  }

  /** The file part: compressed, then plain (a note appended after the end, which is never compressed over the first). */
  private readCurrent(buildId: number): Readable | null {
    const plain = this.path(buildId);
    const gz = `${plain}.gz`;
    const hasPlain = existsSync(plain);
    if (!existsSync(gz)) return hasPlain ? createReadStream(plain) : null;
    const unzipped = createReadStream(gz).pipe(createGunzip());
    if (!hasPlain) return unzipped;
    return Readable.from((async function* () {
      yield* unzipped;
      yield* createReadStream(plain);
    })());
  }

  /** Closes the files and the database (shutdown); a later append opens them again. */
  closeAll(): void {
    for (const id of [...this.open.keys()]) this.close(id);
    this.noteEnds();
    this.heads.clear();
    this.database?.db.close();
    this.database = undefined;
  }

  /**
   * For the object store (log-archive.ts): the log as it is now, after its compression. Its
   * file is moved aside to `<id>.log[.gz].archiving` in one synchronous step (its descriptor
   * closed first), so an append that comes later starts a new file and is never in the
   * snapshot; its rows are those read now. `release` removes the snapshot and exactly those
   * rows. A snapshot left by a put that failed is taken again as it is.
   */
  async take(buildId: number): Promise<LogSource | null> {
    await this.compressing.get(buildId);
    let snapshot = this.snapshotOf(buildId);
    if (!snapshot) {
      const plain = this.path(buildId);
      // The compressed part first: a plain file beside it holds what came after, taken next time.
      const from = existsSync(`${plain}.gz`) ? `${plain}.gz` : existsSync(plain) ? plain : null;
      if (from) {
        this.close(buildId);
        snapshot = `${from}.archiving`;
        renameSync(from, snapshot);
      }
    }
    const rows = this.headRows(buildId);
    if (!snapshot && rows.length === 0) return null;
    const file = snapshot;
    const last = rows.length > 0 ? rows[rows.length - 1]!.id : 0;
    return {
      body: () => {
        const rest = file && (file.endsWith('.gz.archiving') ? createReadStream(file).pipe(createGunzip()) : createReadStream(file));
        return Readable.from((async function* () {
          for (const r of rows) yield r.data;
          if (rest) yield* rest;
        })());
      },
      // The object store has this text now: it must not be served or put again, even when the
      // database refuses the delete (a full disk); then it is remembered and deleted later.
      release: () => {
        if (file) rmSync(file, { force: true });
        this.heads.delete(buildId);
        if (last > 0) {
          try {
            this.db.deleteUpTo.run(buildId, last);
          } catch (e) {
            this.released.set(buildId, Math.max(last, this.released.get(buildId) ?? 0));
            log.warn(`build ${buildId}: its archived log rows stay in ${this.dbFile} until it takes writes again: ${(e as Error).message}`);
          }
        }
        return Promise.resolve(true);
      },
    };
  }

  private snapshotOf(buildId: number): string | null {
    const plain = `${this.path(buildId)}.archiving`;
    const gz = `${this.path(buildId)}.gz.archiving`;
    return existsSync(gz) ? gz : existsSync(plain) ? plain : null;
  }

  heldBuilds(): Promise<number[]> {
    const ids = new Set<number>((this.db.heldBuilds.all() as number[]).filter((id) => !this.released.has(id) || this.headRows(id).length > 0));
    for (const name of readdirSync(this.dir)) {
      const m = /^([1-9][0-9]*)\.log(?:\.gz)?(?:\.archiving)?$/.exec(name);
      if (m) ids.add(Number(m[1]));
    }
    return Promise.resolve([...ids]);
  }

  /**
   * Retention: removes the logs of builds that ended before `cutoff` (ms since the epoch) —
   * their rows and their file in either form — and returns how many builds' logs went. A
   * build's end is the last one noted: one that runs again after its end (a master restarted
   * before the store kept the end) keeps its earlier end until it ends again; only a build whose
   * file is open or being compressed is passed over.
   */
  removeEndedBefore(cutoff: number): number {
    this.noteEnds();
    const db = this.db;
    const forget = db.db.transaction((id: number): number => {
      const rows = db.deleteAll.run(id).changes;
      db.forget.run(id);
      return rows;
    });
    let removed = 0;
    for (const id of db.endedBefore.all(cutoff) as number[]) {
      if (this.open.has(id) || this.compressing.has(id)) continue;
      // Files first: they free space even when the database cannot be written (a full disk).
      let had = false;
      for (const f of [this.path(id), `${this.path(id)}.gz`]) {
        if (existsSync(f)) { rmSync(f, { force: true }); had = true; }
      }
      try {
        if (forget(id) > 0) had = true;
      } catch (e) {
        log.warn(`retention: the log rows of build ${id} stay in ${this.dbFile} for now: ${(e as Error).message}`);
      }
      this.heads.delete(id);
      this.filed.delete(id);
      if (had) removed++;
    }
    return removed;
  }

  /** Whether a build's file is open or being compressed (retention passes such a file over). */
  busy(buildId: number): boolean {
    return this.open.has(buildId) || this.compressing.has(buildId);
  }

  /** Whether a build has rows here (retention leaves such a build's files to removeEndedBefore). */
  hasRows(buildId: number): boolean {
    // Whether one row is left, not the rows' text: retention asks this of every log file.
    return this.db.hasRows.get(buildId, this.released.get(buildId) ?? 0) !== undefined;
  }
}

/** The rows a build's log has in the database. */
interface Head { rows: number; bytes: number }

/** The log database's statements, prepared once (log-store.ts). */
function prepare(db: Database.Database) {
  return {
    db,
    insert: db.prepare('INSERT INTO chunks (build_id, data) VALUES (?, ?)'),
    head: db.prepare('SELECT count(*) AS rows, coalesce(sum(length(data)), 0) AS bytes FROM chunks WHERE build_id = ?'),
    rows: db.prepare('SELECT rowid AS id, data FROM chunks WHERE build_id = ? ORDER BY rowid'),
    hasRows: db.prepare('SELECT 1 FROM chunks WHERE build_id = ? AND rowid > ? LIMIT 1').pluck(),
    heldBuilds: db.prepare('SELECT DISTINCT build_id FROM chunks').pluck(),
    deleteUpTo: db.prepare('DELETE FROM chunks WHERE build_id = ? AND rowid <= ?'),
    deleteAll: db.prepare('DELETE FROM chunks WHERE build_id = ?'),
    ended: db.prepare('INSERT OR REPLACE INTO ended (build_id, at) VALUES (?, ?)'),
    endedBefore: db.prepare('SELECT build_id FROM ended WHERE at < ?').pluck(),
    forget: db.prepare('DELETE FROM ended WHERE build_id = ?'),
  };
}
