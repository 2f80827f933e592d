import { DatabaseError, type Client } from 'pg';
import { connectPostgres, describeTarget, migratePostgres, redact } from './postgres-connect.js';
import {
  artifactFromRow, BUILD_COLUMNS, buildFromRow, capacityFromRow, creditDayFromRow, creditTotalFromRow, duplicateTokenMessage, inviteFromRow,
  oneTimeValues, stepFromRow, tokenFromRow, trustEventFromRow, verificationFromRow, volunteerFromRow, workerFlagFromRow, workerFromRow, type Row,
} from './rows.js';
import type {
  ArtifactRow, BuildPatch, BuildQuery, BuildRow, CapacityRow, CreditDayRow, CreditDelta, CreditTotalRow, EnrollOutcome, Enrollment, InviteRow,
  NewBuild, StepRow, Store, TokenRow, TrustChange, TrustEventRow, VerificationRow, VolunteerRow, WorkerFlagRow, WorkerRow,
} from './store.js';
import type { Verdict } from '../../protocol/api.js';
import { log as masterLog } from '../log.js';
import { PostgresClaims } from './postgres-claims.js';
import { PostgresWebhookDedupe } from './postgres-webhooks.js';

export interface PostgresStoreOptions {
  /** Where to report a lost connection (default: the master's log). */
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
  /** Several masters on this database: claims, fences and leases, on this store's connection and queue. */
  readonly claims: PostgresClaims;
  /** Several masters: webhook replay protection shared by the farm. */
  readonly webhooks: PostgresWebhookDedupe;

  private constructor(
    private readonly url: string,
    private client: Client | null,
    private readonly log: (message: string) => void,
  ) {
    this.claims = new PostgresClaims((job) => this.run(job), url, log);
    this.webhooks = new PostgresWebhookDedupe((job) => this.run(job));
  }

  /** Connects, applies pending migrations under the migration lock, and returns the store. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const log = opts.log ?? ((m: string) => masterLog.warn(m.replace(/^crowdbake: /, '')));
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
      await this.query(INSERT_TOKEN, tokenValues(row));
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

  async deleteOneTimeTokens(names: string[]): Promise<number> {
    if (names.length === 0) return 0;
    return this.count('DELETE FROM tokens WHERE one_time = 1 AND name = ANY($1::text[])', [names]);
  }

  async listRevokedTokenNames(): Promise<string[]> {
    return (await this.query('SELECT name FROM tokens WHERE revoked_at IS NOT NULL')).map((r) => String(r.name));
  }

  async revokeToken(name: string, at: string): Promise<boolean> {
    return (await this.count('UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL', [at, name])) > 0;
  }

  async setWorkerKey(name: string, key: string | null): Promise<boolean> {
    return (await this.count('UPDATE tokens SET worker_key = $1 WHERE name = $2 AND revoked_at IS NULL', [key, name])) > 0;
  }

  async useOneTimeToken(name: string, at: string): Promise<boolean> {
    return (await this.count(`UPDATE tokens SET used_at = $1 WHERE name = $2 AND one_time = 1 AND used_at IS NULL AND revoked_at IS NULL
      AND (expires_at IS NULL OR expires_at > $1)`, [at, name])) > 0;
  }

  async addCloudUsage(provisioner: string, day: string, instanceMs: number): Promise<void> {
    await this.query(`INSERT INTO cloud_usage (provisioner, day, instance_ms) VALUES ($1, $2, $3)
      ON CONFLICT (provisioner, day) DO UPDATE SET instance_ms = cloud_usage.instance_ms + EXCLUDED.instance_ms`, [provisioner, day, Math.round(instanceMs)]);
  }

  async listCloudUsage(provisioner: string, sinceDay: string): Promise<{ day: string; instanceMs: number }[]> {
    return (await this.query('SELECT day, instance_ms FROM cloud_usage WHERE provisioner = $1 AND day >= $2 ORDER BY day', [provisioner, sinceDay]))
      .map((r) => ({ day: String(r.day), instanceMs: Number(r.instance_ms) }));
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
    const update = `UPDATE builds SET ${sets} WHERE id = $${keys.length + 1}`;
    // Back in the queue: no attempt of it is accepted, so its artifact rows go in the same statement.
    const sql = patch.state === 'queued' ? `WITH dropped AS (DELETE FROM artifacts WHERE build_id = $${keys.length + 1}) ${update}` : update;
    await this.query(sql, [...keys.map((k) => patch[k] ?? null), id]);
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
    await this.query(`INSERT INTO artifacts (build_id, name, size, sha256, worker, attempt)
      VALUES ($1, $2, $3, $4, $5, COALESCE($6::integer, (SELECT attempt FROM builds WHERE id = $1)))
      ON CONFLICT (build_id, name) DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256, worker = EXCLUDED.worker, attempt = EXCLUDED.attempt`,
    [a.buildId, a.name, a.size, a.sha256, a.worker, a.attempt ?? null]);
  }

  async listArtifacts(buildId: number): Promise<ArtifactRow[]> {
    return (await this.query(`SELECT a.* FROM artifacts a JOIN builds b ON b.id = a.build_id
      WHERE a.build_id = $1 AND (a.attempt IS NULL OR a.attempt = b.attempt) ORDER BY a.name`, [buildId])).map(artifactFromRow);
  }

  async deleteArtifacts(buildId: number, attempt: number): Promise<void> {
    await this.query('DELETE FROM artifacts WHERE build_id = $1 AND attempt = $2', [buildId, attempt]);
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

  /** Runs `job` inside BEGIN … COMMIT on the store's connection; ROLLBACK when it throws or returns `rollback: true`. */
  private transaction<T>(job: (c: Client) => Promise<{ value: T; rollback?: boolean }>): Promise<T> {
    return this.run(async (c) => {
      await c.query('BEGIN');
      try {
        const { value, rollback } = await job(c);
        await c.query(rollback ? 'ROLLBACK' : 'COMMIT');
        return value;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }

  async createInvite(i: InviteRow): Promise<void> {
    await this.query(`INSERT INTO invites (id, code_hash, labels, max_builds, max_uses, uses_left, expires_at, note, created_at, revoked_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [i.id, i.codeHash, JSON.stringify(i.labels), i.maxBuilds, i.maxUses, i.usesLeft, i.expiresAt, i.note, i.createdAt, i.revokedAt]);
  }

  async listInvites(): Promise<InviteRow[]> {
    return (await this.query('SELECT * FROM invites ORDER BY created_at, id')).map(inviteFromRow);
  }

  async getInviteByCodeHash(codeHash: string): Promise<InviteRow | null> {
    const [r] = await this.query('SELECT * FROM invites WHERE code_hash = $1', [codeHash]);
    return r ? inviteFromRow(r) : null;
  }

  async revokeInvite(id: string, at: string): Promise<boolean> {
    return (await this.count('UPDATE invites SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, id])) > 0;
  }

  enroll(e: Enrollment): Promise<EnrollOutcome> {
    const refused = (reason: Extract<EnrollOutcome, { ok: false }>['reason']): { value: EnrollOutcome; rollback: boolean } => ({ value: { ok: false, reason }, rollback: true });
    return this.transaction<EnrollOutcome>(async (c) => {
      if (e.inviteId !== null) {
        // FOR UPDATE: a second master spending the same invite waits for this one.
        const r = (await c.query<Row>('SELECT * FROM invites WHERE id = $1 FOR UPDATE', [e.inviteId])).rows[0];
        if (!r) return refused('unknown-code');
        const inv = inviteFromRow(r);
        if (inv.revokedAt) return refused('revoked');
        if (inv.expiresAt !== null && inv.expiresAt <= e.at) return refused('expired');
        if (inv.usesLeft <= 0) return refused('used-up');
      }
      if ((await c.query('SELECT 1 FROM tokens WHERE name = $1', [e.token.name])).rowCount) return refused('name-taken');
      const found = (await c.query<Row>('SELECT * FROM volunteers WHERE public_key = $1 FOR UPDATE', [e.volunteer.publicKey])).rows[0];
      let volunteer: VolunteerRow;
      if (found) {
        volunteer = volunteerFromRow(found);
        if (volunteer.trust === 'banned') return refused('banned');
        await c.query('UPDATE volunteers SET display_name = $1, listed = $2 WHERE id = $3', [e.volunteer.displayName, e.volunteer.listed ? 1 : 0, volunteer.id]);
        volunteer = { ...volunteer, displayName: e.volunteer.displayName, listed: e.volunteer.listed };
      } else {
        const v = (volunteer = e.volunteer);
        await c.query(`INSERT INTO volunteers (id, public_key, display_name, listed, trust, trust_source, streak, created_at)
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [v.id, v.publicKey, v.displayName, v.listed ? 1 : 0, v.trust, v.trustSource, v.streak, v.createdAt]);
        await c.query('INSERT INTO trust_events (volunteer_id, trust, previous, source, reason, at) VALUES ($1, $2, NULL, $3, $4, $5)',
          [v.id, v.trust, v.trustSource, e.reason, e.at]);
      }
      await c.query(INSERT_TOKEN, tokenValues({ ...e.token, volunteerId: volunteer.id }));
      if (e.inviteId !== null) await c.query('UPDATE invites SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left > 0', [e.inviteId]);
      return { value: { ok: true as const, volunteer } };
    }).catch((err: unknown) => {
      // Another master took the name between our check and our insert: the same answer as when it was taken before.
      if (err instanceof DatabaseError && err.code === '23505' && err.constraint === 'tokens_pkey') return { ok: false as const, reason: 'name-taken' as const };
      throw err;
    });
  }

  async getVolunteer(id: string): Promise<VolunteerRow | null> {
    const [r] = await this.query('SELECT * FROM volunteers WHERE id = $1', [id]);
    return r ? volunteerFromRow(r) : null;
  }

  async listVolunteers(): Promise<VolunteerRow[]> {
    return (await this.query('SELECT * FROM volunteers ORDER BY created_at, id')).map(volunteerFromRow);
  }

  setTrust(ch: TrustChange): Promise<void> {
    return this.transaction(async (c) => {
      const r = (await c.query<Row>('SELECT trust FROM volunteers WHERE id = $1 FOR UPDATE', [ch.volunteerId])).rows[0];
      if (!r) throw new Error(`no volunteer ${ch.volunteerId}`);
      await c.query('UPDATE volunteers SET trust = $1, trust_source = $2, streak = 0 WHERE id = $3', [ch.trust, ch.source, ch.volunteerId]);
      await c.query('INSERT INTO trust_events (volunteer_id, trust, previous, source, reason, at) VALUES ($1, $2, $3, $4, $5, $6)',
        [ch.volunteerId, ch.trust, String(r.trust), ch.source, ch.reason, ch.at]);
      return { value: undefined };
    });
  }

  async setStreak(volunteerId: string, streak: number): Promise<void> {
    await this.query('UPDATE volunteers SET streak = $1 WHERE id = $2', [streak, volunteerId]);
  }

  async listTrustEvents(volunteerId: string): Promise<TrustEventRow[]> {
    return (await this.query('SELECT * FROM trust_events WHERE volunteer_id = $1 ORDER BY id', [volunteerId])).map(trustEventFromRow);
  }

  async addCredit(d: CreditDelta): Promise<void> {
    const counts = [d.builds, d.cpuMs, d.wallMs, d.agreed, d.disagreed];
    const add = (t: string) => `volunteer_id = EXCLUDED.volunteer_id, builds = ${t}.builds + EXCLUDED.builds, cpu_ms = ${t}.cpu_ms + EXCLUDED.cpu_ms,
      wall_ms = ${t}.wall_ms + EXCLUDED.wall_ms, agreed = ${t}.agreed + EXCLUDED.agreed, disagreed = ${t}.disagreed + EXCLUDED.disagreed`;
    // One statement (both upserts in a data-modifying CTE, so one commit for both): a
    // transaction of its own was four round trips per finished build on the store's one
    // ordered connection.
    await this.query(`WITH day_row AS (
        INSERT INTO credit_days (day, worker, volunteer_id, builds, cpu_ms, wall_ms, agreed, disagreed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (day, worker) DO UPDATE SET ${add('credit_days')})
      INSERT INTO credit_totals (worker, volunteer_id, builds, cpu_ms, wall_ms, agreed, disagreed) VALUES ($2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (worker) DO UPDATE SET ${add('credit_totals')}`, [d.day, d.worker, d.volunteerId, ...counts]);
  }

  async listCreditDays(sinceDay: string): Promise<CreditDayRow[]> {
    return (await this.query('SELECT * FROM credit_days WHERE day >= $1 ORDER BY day, worker', [sinceDay])).map(creditDayFromRow);
  }

  async listCreditTotals(): Promise<CreditTotalRow[]> {
    return (await this.query('SELECT * FROM credit_totals ORDER BY worker')).map(creditTotalFromRow);
  }

  async pruneCreditDays(day: string): Promise<void> {
    await this.query('DELETE FROM credit_days WHERE day < $1', [day]);
  }

  async addCapacitySample(hourOfWeek: number, workers: number): Promise<void> {
    await this.query(`INSERT INTO capacity (hour_of_week, samples, workers_sum, workers_max) VALUES ($1, 1, $2, $3)
      ON CONFLICT (hour_of_week) DO UPDATE SET samples = capacity.samples + 1, workers_sum = capacity.workers_sum + EXCLUDED.workers_sum,
      workers_max = GREATEST(capacity.workers_max, EXCLUDED.workers_max)`, [hourOfWeek, workers, workers]);
  }

  async listCapacity(): Promise<CapacityRow[]> {
    return (await this.query('SELECT * FROM capacity ORDER BY hour_of_week')).map(capacityFromRow);
  }
}

const INSERT_TOKEN = 'INSERT INTO tokens (name, hash, labels, max_builds, created_at, revoked_at, volunteer_id, worker_key, one_time, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)';
const tokenValues = (row: TokenRow): unknown[] => [
  row.name, row.hash, JSON.stringify(row.labels), row.maxBuilds, row.createdAt, row.revokedAt, row.volunteerId ?? null, row.workerKey ?? null,
  ...oneTimeValues(row),
];
