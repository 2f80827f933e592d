import { DatabaseError, type Client } from 'pg';
import { connectPostgres, describeTarget, migratePostgres, redact } from './postgres-connect.js';
import {
  artifactFromRow, BUILD_COLUMNS, buildFromRow, duplicateTokenMessage, stepFromRow, tokenFromRow, verificationFromRow,
  workerFlagFromRow, workerFromRow, type Row,
} from './rows.js';
import type {
  ArtifactRow, BuildPatch, BuildQuery, BuildRow, NewBuild, StepRow, Store, TokenRow, VerificationRow, WorkerFlagRow, WorkerRow,
} from './store.js';
import type { Verdict } from '../../protocol/api.js';

export interface PostgresStoreOptions {
  /** Where to report a lost connection (default: console.error). */
  log?: (message: string) => void;
}

/**
 * The store on PostgreSQL, for masters that share one database.
 *
 * Ordering: every statement runs on one dedicated connection, one at a time, in the order
 * the methods were called (a promise queue), exactly as the synchronous SQLite store does.
 * The coordinator relies on that: it fires some writes without awaiting them, and a read
 * issued after a write sees it. A lost connection is replaced on the next call; a statement
 * that was in flight when it broke fails (it is not retried: it may have been applied).
 */
export class PostgresStore implements Store {
  private tail: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly url: string,
    private client: Client | null,
    private readonly log: (message: string) => void,
  ) {}

  /** Connects, applies pending migrations under the migration lock, and returns the store. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const log = opts.log ?? ((m: string) => console.error(m));
    let store: PostgresStore | null = null;
    const client = await connectPostgres(url, (c, why) => store?.lost(c, why));
    try {
      await migratePostgres(client);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw new Error(`cannot open the PostgreSQL store ${describeTarget(client)}: ${(e as Error).message}`, { cause: e });
    }
    store = new PostgresStore(url, client, log);
    return store;
  }

  private lost(c: Client, why: Error): void {
    if (this.client !== c) return;
    this.client = null;
    c.end().catch(() => undefined);
    if (!this.closing) this.log(`crowdbake: lost the connection to the PostgreSQL store ${redact(this.url)} (${why.message}); reconnecting at the next query`);
  }

  /** Queues `job` behind every call made before it; it gets the connection to itself. */
  private run<T>(job: (c: Client) => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new Error('the PostgreSQL store is closed'));
    const result = this.tail.then(async () => {
      const c = this.client ?? (this.client = await connectPostgres(this.url, (lc, why) => this.lost(lc, why)));
      try {
        return await job(c);
      } catch (e) {
        // Anything but an error the server reported for this statement means the connection is unusable.
        if (!(e instanceof DatabaseError)) this.lost(c, e as Error);
        throw e;
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  private query(text: string, values: unknown[] = []): Promise<Row[]> {
    return this.run(async (c) => (await c.query<Row>(text, values)).rows);
  }

  private count(text: string, values: unknown[]): Promise<number> {
    return this.run(async (c) => (await c.query(text, values)).rowCount ?? 0);
  }

  /** Waits for every call made before it, then disconnects. Later calls fail. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.tail;
      const c = this.client;
      this.client = null;
      await c?.end().catch(() => undefined);
    })());
  }

  async createToken(row: TokenRow): Promise<void> {
    try {
      await this.query('INSERT INTO tokens (name, hash, labels, max_builds, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)',
        [row.name, row.hash, JSON.stringify(row.labels), row.maxBuilds, row.createdAt, row.revokedAt]);
    } catch (e) {
      if (e instanceof DatabaseError && e.code === '23505') throw new Error(duplicateTokenMessage(row.name));
      throw e;
    }
  }

  async getToken(name: string): Promise<TokenRow | null> {
    const [r] = await this.query('SELECT * FROM tokens WHERE name = $1', [name]);
    return r ? tokenFromRow(r) : null;
  }

  async listTokens(): Promise<TokenRow[]> {
    return (await this.query('SELECT * FROM tokens ORDER BY name')).map(tokenFromRow);
  }

  async revokeToken(name: string, at: string): Promise<boolean> {
    return (await this.count('UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL', [at, name])) > 0;
  }

  async upsertWorker(row: WorkerRow): Promise<void> {
    await this.query(`INSERT INTO workers (name, capabilities, last_seen_at) VALUES ($1, $2, $3)
      ON CONFLICT (name) DO UPDATE SET capabilities = EXCLUDED.capabilities, last_seen_at = EXCLUDED.last_seen_at`,
    [row.name, row.capabilities, row.lastSeenAt]);
  }

  async listWorkers(): Promise<WorkerRow[]> {
    return (await this.query('SELECT * FROM workers ORDER BY name')).map(workerFromRow);
  }

  async insertBuild(row: NewBuild): Promise<BuildRow> {
    const [r] = await this.query(`INSERT INTO builds (builder, revision, reason, state, attempt, queued_at, branch, trigger_kind, rebuild_of)
      VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $7) RETURNING *`,
    [row.builder, row.revision, row.reason, row.queuedAt, row.branch ?? null, row.trigger ?? 'force', row.rebuildOf ?? null]);
    return buildFromRow(r!);
  }

  async updateBuild(id: number, patch: BuildPatch): Promise<void> {
    const keys = Object.keys(patch) as (keyof BuildPatch)[];
    if (keys.length === 0) return;
    const sets = keys.map((k, i) => `${BUILD_COLUMNS[k]} = $${i + 1}`).join(', ');
    await this.query(`UPDATE builds SET ${sets} WHERE id = $${keys.length + 1}`, [...keys.map((k) => patch[k] ?? null), id]);
  }

  async getBuild(id: number): Promise<BuildRow | null> {
    const [r] = await this.query('SELECT * FROM builds WHERE id = $1', [id]);
    return r ? buildFromRow(r) : null;
  }

  async listBuilds(q: BuildQuery): Promise<BuildRow[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown) => `$${args.push(v)}`;
    if (q.builder !== undefined) where.push(`builder = ${arg(q.builder)}`);
    if (q.state !== undefined) where.push(`state = ${arg(q.state)}`);
    if (q.beforeId !== undefined) where.push(`id < ${arg(q.beforeId)}`);
    const sql = `SELECT * FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${arg(q.limit)}`;
    return (await this.query(sql, args)).map(buildFromRow);
  }

  async listUnfinishedBuilds(): Promise<BuildRow[]> {
    return (await this.query(`SELECT * FROM builds WHERE state <> 'finished' ORDER BY id`)).map(buildFromRow);
  }

  async putStep(s: StepRow): Promise<void> {
    await this.query(`INSERT INTO steps (build_id, idx, name, state, result, exit_code) VALUES ($1, $2, $3, $4, $5, $6)
      ON CONFLICT (build_id, idx) DO UPDATE SET name = EXCLUDED.name, state = EXCLUDED.state,
      result = EXCLUDED.result, exit_code = EXCLUDED.exit_code`,
    [s.buildId, s.index, s.name, s.state, s.result, s.exitCode]);
  }

  async clearSteps(buildId: number): Promise<void> {
    await this.query('DELETE FROM steps WHERE build_id = $1', [buildId]);
  }

  async listSteps(buildIds: number[]): Promise<StepRow[]> {
    if (buildIds.length === 0) return [];
    return (await this.query('SELECT * FROM steps WHERE build_id = ANY($1::bigint[]) ORDER BY build_id, idx', [buildIds])).map(stepFromRow);
  }

  async putArtifact(a: ArtifactRow): Promise<void> {
    await this.query(`INSERT INTO artifacts (build_id, name, size, sha256, worker) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (build_id, name) DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256, worker = EXCLUDED.worker`,
    [a.buildId, a.name, a.size, a.sha256, a.worker]);
  }

  async listArtifacts(buildId: number): Promise<ArtifactRow[]> {
    return (await this.query('SELECT * FROM artifacts WHERE build_id = $1 ORDER BY name', [buildId])).map(artifactFromRow);
  }

  insertBuildGroup(rows: NewBuild[]): Promise<BuildRow[]> {
    return this.run(async (c) => {
      await c.query('BEGIN');
      try {
        const out: BuildRow[] = [];
        for (const r of rows) {
          const res = await c.query<Row>(`INSERT INTO builds (builder, revision, reason, state, attempt, queued_at, branch, trigger_kind, rebuild_of)
            VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $7) RETURNING *`,
          [r.builder, r.revision, r.reason, r.queuedAt, r.branch ?? null, r.trigger ?? 'force', r.rebuildOf ?? null]);
          out.push(buildFromRow(res.rows[0]!));
        }
        for (const b of out) {
          await c.query(`INSERT INTO verifications (build_id, group_id, replicas, verdict, detail) VALUES ($1, $2, $3, 'pending', NULL)`,
            [b.id, out[0]!.id, out.length]);
        }
        await c.query('COMMIT');
        return out;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }

  async listVerifications(groupId: number): Promise<VerificationRow[]> {
    return (await this.query('SELECT * FROM verifications WHERE group_id = $1 ORDER BY build_id', [groupId])).map(verificationFromRow);
  }

  async getVerification(buildId: number): Promise<VerificationRow | null> {
    const [r] = await this.query('SELECT * FROM verifications WHERE build_id = $1', [buildId]);
    return r ? verificationFromRow(r) : null;
  }

  async listPendingVerifications(): Promise<VerificationRow[]> {
    return (await this.query(`SELECT * FROM verifications WHERE group_id IN
      (SELECT group_id FROM verifications WHERE verdict = 'pending') ORDER BY build_id`)).map(verificationFromRow);
  }

  async setVerdict(buildId: number, verdict: Verdict, detail: string | null): Promise<void> {
    await this.query('UPDATE verifications SET verdict = $1, detail = $2 WHERE build_id = $3', [verdict, detail, buildId]);
  }

  async flagWorker(f: WorkerFlagRow): Promise<void> {
    await this.query(`INSERT INTO worker_flags (worker, build_id, reason, at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (worker, build_id) DO UPDATE SET reason = EXCLUDED.reason, at = EXCLUDED.at`, [f.worker, f.buildId, f.reason, f.at]);
  }

  async listWorkerFlags(): Promise<WorkerFlagRow[]> {
    return (await this.query('SELECT * FROM worker_flags ORDER BY worker, build_id')).map(workerFlagFromRow);
  }
}
