import { Readable } from 'node:stream';
import type { Client } from 'pg';
import type { ArchivableLogs, LogSource, WorkerLogRange } from '../log-store.js';
import { connectPostgres } from './postgres-connect.js';

/** Rows are written at most this long after they arrive… */
const FLUSH_MS = 25;
/** …or as soon as this much text waits. */
const FLUSH_BYTES = 256 * 1024;
/** Rows read per query when a log is served. */
const READ_BATCH = 500;

interface Pending {
  buildId: number;
  /** Set for a worker's text (fenced by attempt and holder); absent for the master's own notes. */
  range?: WorkerLogRange;
  data: Buffer;
  /** This master's id in the farm when the text came (the fence is that id's, not a later one's). */
  holder: string;
}

/**
 * Build logs in the farm's PostgreSQL (several masters on one store), so that any master
 * serves any build's log, live or finished, and a build adopted by another master after a
 * fail-over goes on in the same log with nothing lost and nothing twice.
 *
 * - Each chunk is a row of `log_chunks` (migration 7), ordered by `seq`. The master's own
 *   notes have no attempt; a worker's text carries its attempt and its range in that
 *   attempt's log (`worker_from`..`worker_to`, FEATURE_LOG_ACK offsets).
 * - Every row is fenced by the id the master had when the text came: stored only while that
 *   id's lease is live (so a master that lost its lease writes no note about the builds it
 *   lost, even after it joined again under a new id and its buffered rows get through).
 * - Writes are batched (FLUSH_MS / FLUSH_BYTES) into one INSERT on a connection of their own
 *   (not the store's: a busy log must not delay a claim). A worker's rows are fenced like every
 *   other write about an attempt: inserted only while the build is at that attempt, held by
 *   this master and its lease is live, with the build row locked FOR SHARE so that an adoption
 *   (an UPDATE of the holder) waits for the insert or the insert sees the new holder.
 * - `onStored` is told, after the commit, how far each attempt's log is stored; the
 *   coordinator acknowledges that to the worker (`logAck`), which only then forgets the text.
 *   A master killed with rows still buffered loses nothing: the worker sends them again to
 *   the master that adopts the attempt, which starts from `storedOffset`.
 * - A lost connection is opened again at the next flush; rows wait meanwhile (and the
 *   workers, short of acknowledgements, slow down: master-link.ts bounds what they keep).
 */
export class PostgresLogs implements ArchivableLogs {
  private client: Client | null = null;
  private connecting: Promise<Client> | null = null;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly url: string,
    /** This master's id in the farm now (it changes when the master joins again). */
    private readonly holder: () => string,
    private readonly onStored: (stored: { buildId: number; attempt: number; offset: number }[]) => void,
    private readonly log: (m: string) => void,
    private readonly onBytes?: (n: number) => void,
  ) {}

  append(buildId: number, data: string | Buffer, range?: WorkerLogRange): void {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const holder = this.holder();
    this.pending.push(range ? { buildId, range, data: buf, holder } : { buildId, data: buf, holder });
    this.pendingBytes += buf.length;
    this.onBytes?.(buf.length);
    if (this.pendingBytes >= FLUSH_BYTES) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** How much of an attempt's log the store holds (where an adopted attempt's text goes on). */
  async storedOffset(buildId: number, attempt: number): Promise<number> {
    await this.flush();
    const c = await this.connection();
    const r = await c.query<{ to: string | null }>('SELECT max(worker_to) AS to FROM log_chunks WHERE build_id = $1 AND attempt = $2', [buildId, attempt]);
    return Number(r.rows[0]?.to ?? 0);
  }

  close(): void {
    // Nothing is open per build.
  }

  finish(): void {
    // Logs stay rows; retention removes a finished build's with its other data.
  }

  closeAll(): void {
    void this.flush();
  }

  /** Writes what is buffered; resolves when it is stored (or has failed and waits for the next try). */
  flush(): Promise<void> {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.flushing) return this.flushing.then(() => (this.pending.length ? this.flush() : undefined));
    if (this.pending.length === 0) return Promise.resolve();
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    this.flushing = this.write(batch).catch((e: Error) => {
      // Kept, in order, ahead of what came meanwhile; tried again shortly.
      this.pending = [...batch, ...this.pending];
      this.pendingBytes = this.pending.reduce((n, p) => n + p.data.length, 0);
      this.log(`cannot store build logs in PostgreSQL (${e.message}); trying again in 1s`);
      if (!this.closed && !this.timer) {
        this.timer = setTimeout(() => void this.flush(), 1000);
        this.timer.unref();
      }
    }).finally(() => { this.flushing = null; });
    return this.flushing;
  }

  private async write(batch: Pending[]): Promise<void> {
    const c = await this.connection();
    const cols = { id: [] as number[], attempt: [] as (number | null)[], from: [] as (number | null)[], to: [] as (number | null)[], data: [] as Buffer[], holder: [] as string[] };
    for (const p of batch) {
      cols.holder.push(p.holder);
      cols.id.push(p.buildId);
      cols.attempt.push(p.range?.attempt ?? null);
      cols.from.push(p.range?.from ?? null);
      cols.to.push(p.range ? p.range.from + p.range.length : null);
      cols.data.push(p.data);
    }
    // WITH ORDINALITY keeps the batch's order in `seq`. The fence, per row, by the id this
    // master had when the text came: that id's lease is live (a master's own notes too — one
    // cut off from the database past its lease writes nothing about the builds it lost when it
    // gets through again, even under its new id), and a worker's text is of the build's current
    // attempt, held by that id.
    const r = await c.query<{ build_id: string; attempt: number | null; worker_to: string | null }>(`INSERT INTO log_chunks (build_id, attempt, worker_from, worker_to, data)
      SELECT u.id, u.attempt, u.wfrom, u.wto, u.data
      FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bigint[], $5::bytea[], $6::text[]) WITH ORDINALITY AS u(id, attempt, wfrom, wto, data, holder, n)
      WHERE EXISTS (SELECT 1 FROM masters m WHERE m.id = u.holder AND m.alive_until > now())
        AND (u.attempt IS NULL OR EXISTS (SELECT 1 FROM builds b WHERE b.id = u.id AND b.attempt = u.attempt AND b.holder = u.holder AND b.state IN ('running', 'frozen', 'finished') FOR SHARE))
      ORDER BY u.n
      RETURNING build_id, attempt, worker_to`, [cols.id, cols.attempt, cols.from, cols.to, cols.data, cols.holder]);
    const stored = new Map<string, { buildId: number; attempt: number; offset: number }>();
    for (const row of r.rows) {
      if (row.attempt === null || row.worker_to === null) continue;
      const key = `${row.build_id}:${row.attempt}`;
      const offset = Number(row.worker_to);
      const had = stored.get(key);
      if (!had || had.offset < offset) stored.set(key, { buildId: Number(row.build_id), attempt: row.attempt, offset });
    }
    if (stored.size) this.onStored([...stored.values()]);
  }

  /** The build's log; `through`: only the rows up to that `seq` (log-archive.ts). */
  read(buildId: number, through?: number): Readable {
    const self = this;
    const upTo = through ?? Number.MAX_SAFE_INTEGER;
    return Readable.from((async function* () {
      await self.flush();
      const c = await self.connection();
      let after = 0;
      for (;;) {
        const r = await c.query<{ seq: string; data: Buffer }>('SELECT seq, data FROM log_chunks WHERE build_id = $1 AND seq > $2 AND seq <= $4 ORDER BY seq LIMIT $3', [buildId, after, READ_BATCH, upTo]);
        for (const row of r.rows) yield row.data;
        if (r.rows.length < READ_BATCH) return;
        after = Number(r.rows[r.rows.length - 1]!.seq);
      }
    })(), { objectMode: false });
  }

  /**
   * For the object store (log-archive.ts): the build's rows up to the last one stored now;
   * `release` deletes exactly those (rows appended later stay, and are served after the object).
   */
  async take(buildId: number): Promise<LogSource | null> {
    await this.flush();
    const c = await this.connection();
    const r = await c.query<{ last: string | null }>('SELECT max(seq) AS last FROM log_chunks WHERE build_id = $1', [buildId]);
    const last = r.rows[0]?.last;
    if (last === null || last === undefined) return null;
    return {
      body: () => this.read(buildId, Number(last)),
      release: async () => {
        await (await this.connection()).query('DELETE FROM log_chunks WHERE build_id = $1 AND seq <= $2', [buildId, last]);
        return true;
      },
    };
  }

  /** Finished builds that still have rows here (their logs not yet in the object store). */
  async heldBuilds(): Promise<number[]> {
    const c = await this.connection();
    const r = await c.query<{ build_id: string }>(`SELECT DISTINCT l.build_id FROM log_chunks l JOIN builds b ON b.id = l.build_id WHERE b.state = 'finished'`);
    return r.rows.map((x) => Number(x.build_id));
  }

  /** Removes the logs of these builds (retention). */
  async remove(buildIds: number[]): Promise<void> {
    if (buildIds.length === 0) return;
    const c = await this.connection();
    await c.query('DELETE FROM log_chunks WHERE build_id = ANY($1::bigint[])', [buildIds]);
  }

  /** Removes the logs of builds that finished before `cutoff` (an ISO time; retention); returns how many builds' logs went. */
  async removeFinishedBefore(cutoff: string): Promise<number> {
    const c = await this.connection();
    const r = await c.query<{ build_id: string }>(`DELETE FROM log_chunks WHERE build_id IN (SELECT id FROM builds WHERE state = 'finished' AND finished_at < $1)
      RETURNING build_id`, [cutoff]);
    return new Set(r.rows.map((x) => x.build_id)).size;
  }

  async settled(): Promise<void> {
    await this.flush();
  }

  async end(): Promise<void> {
    await this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }

  private connection(): Promise<Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= connectPostgres(this.url, (lost) => {
      if (this.client === lost) this.client = null;
    }).then((c) => {
      this.client = c;
      return c;
    }).finally(() => { this.connecting = null; });
    return this.connecting;
  }
}
