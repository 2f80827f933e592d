import type Database from 'better-sqlite3';
import { createRequire } from 'node:module';
import { close, closeSync, constants, createReadStream, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writev, writeSync, type ReadStream } from 'node:fs';
import { join } from 'node:path';
import type { HistoryEntry } from '../protocol/control-api.js';
import type { BuildResult } from '../protocol/worker-messages.js';

type Row = Record<string, unknown>;

/** history/.spare.log: not `<id>.log`, so no entry's reader finds it. */
const SPARE_LOG = '.spare.log';

/**
 * This machine's own build history (DATA/history.db + DATA/history/<id>.log), so a developer
 * can see what ran here, with which result, and read the logs. Keeps the newest `keep` builds.
 */
export class HistoryStore {
  private opened: Database.Database | null = null;
  private readonly logDir: string;
  private readonly logs = new Map<number, LocalLog>();

  /**
   * The database is opened (and better-sqlite3, its native module, loaded) at the first read or
   * write, not here: a connected, idle agent that has not built yet does not carry it (about
   * 2 MiB, bench/README.md). The builds an earlier agent left running are marked then, before
   * anything this agent records.
   */
  constructor(private readonly dataDir: string, private readonly keep = 500) {
    mkdirSync(dataDir, { recursive: true });
    this.logDir = join(dataDir, 'history');
    mkdirSync(this.logDir, { recursive: true });
    this.spareLog = join(this.logDir, SPARE_LOG);
    this.spareReady = existsSync(this.spareLog);
  }

  /**
   * The log file of the build that last fell out of the history, renamed here for the next
   * build's log rather than removed: once `keep` builds are kept, each build would otherwise
   * free one inode and allocate one (on ext4 without a journal, allocating walks the inodes
   * freed in the last minute: bench/README.md, "The short build on the host, by perf").
   */
  private readonly spareLog: string;
  private spareReady: boolean;
  /** Logs closed while a write of theirs was in flight: their files are removed, never reused, when pruned. */
  private readonly closing = new Map<number, LocalLog>();

  private get db(): Database.Database {
    return this.opened ??= this.open();
  }

  /** Statements of every build, prepared once (preparing is most of a small statement's cost). */
  private readonly statements = new Map<string, Database.Statement>();

  private stmt(sql: string): Database.Statement {
    const db = this.db;
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, st = db.prepare(sql));
    return st;
  }

  private open(): Database.Database {
    const file = join(this.dataDir, 'history.db');
    let db: Database.Database;
    try {
      const Sqlite = createRequire(import.meta.url)('better-sqlite3') as typeof Database;
      db = new Sqlite(file);
      db.pragma('journal_mode = WAL');
      // Like the master's store: commits survive a crash of the agent; only a power cut may
      // lose the last ones. With the default (FULL), each build's start and end waited for an
      // fsync (about 5 ms each where the bench ran) between the assignment and the first step.
      db.pragma('synchronous = NORMAL');
    } catch (e) {
      throw new Error(`cannot open the local history ${file}: ${(e as Error).message}`);
    }
    db.exec(`CREATE TABLE IF NOT EXISTS builds (
      id INTEGER PRIMARY KEY AUTOINCREMENT, build_id INTEGER NOT NULL, attempt INTEGER NOT NULL,
      master TEXT NOT NULL, builder TEXT NOT NULL, revision TEXT, result TEXT, message TEXT,
      started_at TEXT NOT NULL, finished_at TEXT, frozen_ms INTEGER NOT NULL DEFAULT 0)`);
    // Added later: the build spec (to run it again here) and which entry a local re-run repeats.
    const columns = new Set((db.prepare('PRAGMA table_info(builds)').all() as { name: string }[]).map((c) => c.name));
    if (!columns.has('spec')) db.exec('ALTER TABLE builds ADD COLUMN spec TEXT');
    if (!columns.has('rerun_of')) db.exec('ALTER TABLE builds ADD COLUMN rerun_of INTEGER');
    // And the CPU time the build's sandboxes used (their cgroup's counter), where it could be read.
    if (!columns.has('cpu_ms')) db.exec('ALTER TABLE builds ADD COLUMN cpu_ms INTEGER');
    // Builds that were running when the agent stopped: the master requeued them.
    db.prepare(`UPDATE builds SET result = 'error', message = 'the agent stopped while it ran', finished_at = ?
      WHERE finished_at IS NULL`).run(new Date().toISOString());
    return db;
  }

  start(e: { buildId: number; attempt: number; master: string; builder: string; revision: string | null; spec?: unknown; rerunOf?: number }): number {
    const r = this.stmt(`INSERT INTO builds (build_id, attempt, master, builder, revision, started_at, spec, rerun_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(e.buildId, e.attempt, e.master, e.builder, e.revision, new Date().toISOString(),
        e.spec === undefined ? null : JSON.stringify(e.spec), e.rerunOf ?? null);
    const id = Number(r.lastInsertRowid);
    this.prune();
    return id;
  }

  /**
   * Appends to entry `id`'s log. Written off the event loop (a loud step's log is tens of MB,
   * and this copy was 15 ms of the agent's main thread per 20 MB, bench/README.md), each piece at
   * its own position, so that `finish` can write again synchronously whatever is not confirmed
   * yet — the same bytes at the same place — and the file is complete when it returns.
   */
  appendLog(id: number, data: string | Uint8Array): void {
    let log = this.logs.get(id);
    if (!log) {
      // Not O_APPEND: Linux's pwrite would ignore the positions. Written from where the file ends.
      log = new LocalLog(this.reuseSpareLog(id) ?? openSync(join(this.logDir, `${id}.log`), constants.O_WRONLY | constants.O_CREAT, 0o600));
      this.logs.set(id, log);
    }
    log.append(typeof data === 'string' ? Buffer.from(data) : data);
  }

  finish(id: number, result: BuildResult, message: string | null, frozenMs: number, cpuMs: number | null = null): void {
    this.stmt('UPDATE builds SET result = ?, message = ?, finished_at = ?, frozen_ms = ?, cpu_ms = ? WHERE id = ?')
      .run(result, message, new Date().toISOString(), Math.round(frozenMs), cpuMs, id);
    this.closeLog(id);
  }

  /** Closes entry `id`'s log; one whose last write is still in flight is remembered until it lands (prune must not reuse its file). */
  private closeLog(id: number): void {
    const log = this.logs.get(id);
    if (!log) return;
    this.logs.delete(id);
    try {
      log.close();
    } finally {
      if (!log.settled) this.closing.set(id, log);
    }
  }

  /** Resolves when every closed log's last write has landed (its file may then be reused: prune). For shutdown and tests. */
  async settled(): Promise<void> {
    await Promise.all([...this.closing.values()].map((l) => l.whenSettled()));
  }

  list(limit = 100, builder?: string): HistoryEntry[] {
    const rows = builder
      ? this.db.prepare('SELECT * FROM builds WHERE builder = ? ORDER BY id DESC LIMIT ?').all(builder, limit)
      : this.db.prepare('SELECT * FROM builds ORDER BY id DESC LIMIT ?').all(limit);
    return (rows as Row[]).map(toEntry);
  }

  get(id: number): HistoryEntry | null {
    const r = this.db.prepare('SELECT * FROM builds WHERE id = ?').get(id) as Row | undefined;
    return r ? toEntry(r) : null;
  }

  readLog(id: number): ReadStream | null {
    const p = this.logPath(id);
    return existsSync(p) ? createReadStream(p) : null;
  }

  /** Where entry `id`'s log is (the file may not exist yet). */
  logPath(id: number): string {
    return join(this.logDir, `${id}.log`);
  }

  /** The build spec entry `id` ran (JSON as stored; validated by whoever runs it), or null. */
  spec(id: number): unknown {
    const r = this.db.prepare('SELECT spec FROM builds WHERE id = ?').get(id) as { spec: string | null } | undefined;
    return r?.spec ? JSON.parse(r.spec) as unknown : null;
  }

  /** The spare log file as entry `id`'s, emptied; null when there is none (or `id` has a log already). */
  private reuseSpareLog(id: number): number | null {
    if (!this.spareReady) return null;
    const path = join(this.logDir, `${id}.log`);
    // An entry appended to again after its end goes on in its own file: never renamed over.
    if (existsSync(path)) return null;
    this.spareReady = false;
    try {
      renameSync(this.spareLog, path);
    } catch {
      return null;
    }
    try {
      return openSync(path, constants.O_WRONLY | constants.O_TRUNC);
    } catch {
      // Not emptied: removed, so that the entry's own log does not start with another's text.
      rmSync(path, { force: true });
      return null;
    }
  }

  private prune(): void {
    const old = this.stmt('SELECT id FROM builds ORDER BY id DESC LIMIT -1 OFFSET ?').all(this.keep) as { id: number }[];
    for (const [id, log] of this.closing) if (log.settled) this.closing.delete(id);
    for (const { id } of old) {
      const path = join(this.logDir, `${id}.log`);
      // Kept as the next build's log file when none is kept yet (reuseSpareLog); else removed.
      // Not while a write of it may still land (it would land in the next build's log).
      const busy = this.logs.has(id) || this.closing.has(id);
      this.closing.delete(id);
      if (!this.spareReady && !busy && existsSync(path)) {
        try { renameSync(path, this.spareLog); this.spareReady = true; } catch { rmSync(path, { force: true }); }
      } else rmSync(path, { force: true });
      this.stmt('DELETE FROM builds WHERE id = ?').run(id);
    }
  }

  close(): void {
    // A log that cannot be written (a full disk) does not keep the others or the database open.
    for (const id of [...this.logs.keys()]) { try { this.closeLog(id); } catch { /* its build's copy stays short */ } }
    this.statements.clear();
    if (this.opened?.open) this.opened.close();
  }
}

function toEntry(r: Row): HistoryEntry {
  const s = (v: unknown) => (v === null || v === undefined ? null : String(v));
  return {
    id: Number(r.id), buildId: Number(r.build_id), attempt: Number(r.attempt), master: String(r.master),
    builder: String(r.builder), revision: s(r.revision), result: s(r.result) as HistoryEntry['result'],
    message: s(r.message), startedAt: String(r.started_at), finishedAt: s(r.finished_at), frozenMs: Number(r.frozen_ms),
    rerunOf: r.rerun_of === null || r.rerun_of === undefined ? null : Number(r.rerun_of), canRerun: r.spec !== null && r.spec !== undefined,
    cpuMs: r.cpu_ms === null || r.cpu_ms === undefined ? null : Number(r.cpu_ms),
  };
}

/**
 * One open log file of the history: pieces are written in order by `fs.writev` on libuv's
 * threads (all that waits in one call), each at the position it was given (the file is opened for this agent alone and
 * starts where it ends now). `close` writes synchronously what is not confirmed yet — a piece
 * in flight is written twice, the same bytes at the same place — and closes the descriptor once
 * no write uses it. Past MAX_QUEUED bytes waiting (a disk slower than the step), what waits is
 * written synchronously at once, in order: the queue stays bounded.
 */
class LocalLog {
  private static readonly MAX_QUEUED = 8 * 1024 * 1024;
  private position: number;
  private readonly queue: Piece[] = [];
  private queued = 0;
  private inFlight: Piece[] = [];
  private closed = false;
  private failed: Error | null = null;

  private onSettled: (() => void)[] = [];

  /** Closed, and no write of it is still in flight (its descriptor is closed or closing). */
  get settled(): boolean {
    return this.closed && this.inFlight.length === 0;
  }

  /** Resolves once settled. */
  whenSettled(): Promise<void> {
    return this.settled ? Promise.resolve() : new Promise((ok) => this.onSettled.push(ok));
  }

  constructor(private readonly fd: number) {
    this.position = fstatSync(fd).size;
  }

  append(bytes: Uint8Array): void {
    if (this.failed) throw this.failed;
    if (this.closed) throw new Error('the log is closed');
    const piece = { at: this.position, bytes };
    this.position += bytes.length;
    if (this.queued + bytes.length > LocalLog.MAX_QUEUED) {
      // In order, the piece in flight again too: a reader following the file never meets a hole.
      for (const p of [...this.inFlight, ...this.queue.splice(0), piece]) writeAll(this.fd, p);
      this.queued = 0;
      return;
    }
    this.queue.push(piece);
    this.queued += bytes.length;
    this.next();
  }

  /** Writes everything waiting in one `writev` at the first piece's place (the pieces follow one another). */
  private next(): void {
    if (this.inFlight.length || this.closed || this.queue.length === 0) return;
    const pieces = this.queue.splice(0);
    this.queued = 0;
    this.inFlight = pieces;
    writev(this.fd, pieces.map((p) => p.bytes), pieces[0]!.at, (e, n) => {
      this.inFlight = [];
      if (this.closed) {
        close(this.fd, () => undefined);
        for (const ok of this.onSettled.splice(0)) ok();
        return;
      }
      if (e) { this.failed = e; this.queue.length = 0; this.queued = 0; return; }
      // A short write: what is left of the pieces goes first next time.
      const rest: Piece[] = [];
      for (const p of pieces) {
        if (n >= p.bytes.length) { n -= p.bytes.length; continue; }
        rest.push(n > 0 ? { at: p.at + n, bytes: p.bytes.subarray(n) } : p);
        n = 0;
      }
      for (const p of rest) this.queued += p.bytes.length;
      this.queue.unshift(...rest);
      this.next();
    });
  }

  /** Everything appended is in the file when this returns; the descriptor closes once no write uses it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const rest = [...this.inFlight, ...this.queue.splice(0)];
    this.queued = 0;
    try {
      for (const piece of rest) writeAll(this.fd, piece);
    } finally {
      if (!this.inFlight.length) closeSync(this.fd);
    }
    if (this.failed) throw this.failed;
  }
}

interface Piece { at: number; bytes: Uint8Array }

function writeAll(fd: number, piece: Piece): void {
  let done = 0;
  while (done < piece.bytes.length) done += writeSync(fd, piece.bytes, done, piece.bytes.length - done, piece.at + done);
}
