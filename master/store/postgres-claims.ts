import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Client } from 'pg';
import { QUEUE_CHANNEL } from '../../protocol/farm.js';
import type { ClaimStore } from './claims.js';
import { connectPostgres } from './postgres-connect.js';
import { BUILD_COLUMNS, buildFromRow, type Row } from './rows.js';
import type { ArtifactRow, BuildPatch, BuildRow, StepRow } from './store.js';

/** Runs a job on the store's one connection, in call order (PostgresStore's queue). */
export type Runner = <T>(job: (c: Client) => Promise<T>) => Promise<T>;

const ms = (n: number) => `${Math.max(0, Math.round(n))} milliseconds`;
/** True while master $1's lease has not run out (the database's clock decides). */
const LIVE = (p: string) => `EXISTS (SELECT 1 FROM masters m WHERE m.id = ${p} AND m.alive_until > now())`;
const RUNNING = `state IN ('running', 'frozen')`;

/**
 * The claims, fences and leases of several masters on one PostgreSQL (the design is in
 * claims.ts). Every statement goes through the store's own connection and queue, so a fenced
 * write is ordered with the store's other writes exactly as the coordinator issued them.
 */
export class PostgresClaims implements ClaimStore {
  private id = newHolderId();

  constructor(private readonly run: Runner, private readonly url: string, private readonly log: (m: string) => void) {}

  get holder(): string {
    return this.id;
  }

  private async rows(text: string, values: unknown[]): Promise<Row[]> {
    return this.run(async (c) => (await c.query<Row>(text, values)).rows);
  }

  async join(url: string, leaseMs: number): Promise<void> {
    this.id = newHolderId();
    await this.rows(`INSERT INTO masters (id, url, alive_until, joined_at) VALUES ($1, $2, now() + $3::interval, now())`, [this.id, url, ms(leaseMs)]);
  }

  async renew(leaseMs: number): Promise<boolean> {
    // Only a lease still running is extended: one that ran out stays lost.
    const r = await this.rows(`UPDATE masters SET alive_until = now() + $2::interval WHERE id = $1 AND alive_until > now() RETURNING id`, [this.id, ms(leaseMs)]);
    return r.length > 0;
  }

  async leave(windowMs = 0): Promise<void> {
    await this.rows(`UPDATE builds SET holder = NULL, orphan_until = now() + $2::interval WHERE holder = $1 AND ${RUNNING}`, [this.id, ms(windowMs)]);
    await this.rows(`DELETE FROM leases WHERE holder = $1`, [this.id]);
    await this.rows(`DELETE FROM masters WHERE id = $1`, [this.id]);
  }

  async listQueued(): Promise<BuildRow[]> {
    return (await this.rows(`SELECT * FROM builds WHERE state = 'queued' ORDER BY id`, [])).map(buildFromRow);
  }

  async claim(id: number, seenAttempt: number, worker: string, startedAt: string): Promise<BuildRow | null> {
    const [r] = await this.rows(`UPDATE builds SET state = 'running', attempt = attempt + 1, worker = $3, started_at = $4, message = NULL, holder = $5, orphan_until = NULL
      WHERE id = (SELECT id FROM builds WHERE id = $1 AND state = 'queued' AND attempt = $2 FOR UPDATE SKIP LOCKED) AND ${LIVE('$5')}
      RETURNING *`, [id, seenAttempt, worker, startedAt, this.id]);
    return r ? buildFromRow(r) : null;
  }

  async update(id: number, fence: { attempt: number; queued?: boolean }, patch: BuildPatch): Promise<boolean> {
    const keys = Object.keys(patch) as (keyof BuildPatch)[];
    const values: unknown[] = [id, fence.attempt, this.id];
    const sets = keys.map((k) => `${BUILD_COLUMNS[k]} = $${values.push(patch[k] ?? null)}`);
    if (patch.state === 'queued') sets.push('holder = NULL', 'orphan_until = NULL');
    if (sets.length === 0) sets.push('id = id');
    const where = fence.queued ? `state = 'queued'` : `${RUNNING} AND holder = $3 AND ${LIVE('$3')}`;
    const update = `UPDATE builds SET ${sets.join(', ')} WHERE id = $1 AND attempt = $2 AND ($3::text IS NOT NULL) AND ${where} RETURNING id`;
    // Back to the queue: its steps go in the same statement (a claim by another master could come between two).
    const r = await this.rows(patch.state === 'queued'
      ? `WITH u AS (${update}), d AS (DELETE FROM steps WHERE build_id IN (SELECT id FROM u)) SELECT id FROM u` : update, values);
    if (r.length && patch.state === 'queued') await this.wake();
    return r.length > 0;
  }

  async putStep(attempt: number, s: StepRow): Promise<boolean> {
    const r = await this.rows(`INSERT INTO steps (build_id, idx, name, state, result, exit_code) SELECT $1, $2, $3, $4, $5, $6
      WHERE EXISTS (SELECT 1 FROM builds WHERE id = $1 AND attempt = $7 AND holder = $8 AND ${RUNNING}) AND ${LIVE('$8')}
      ON CONFLICT (build_id, idx) DO UPDATE SET name = EXCLUDED.name, state = EXCLUDED.state, result = EXCLUDED.result, exit_code = EXCLUDED.exit_code
      RETURNING build_id`, [s.buildId, s.index, s.name, s.state, s.result, s.exitCode, attempt, this.id]);
    return r.length > 0;
  }

  async putArtifact(attempt: number, a: ArtifactRow): Promise<boolean> {
    // The row names its attempt: only the current attempt's artifacts are listed (listArtifacts).
    const r = await this.rows(`INSERT INTO artifacts (build_id, name, size, sha256, worker, attempt) SELECT $1, $2, $3, $4, $5, $6
      WHERE EXISTS (SELECT 1 FROM builds WHERE id = $1 AND attempt = $6 AND holder = $7 AND ${RUNNING} FOR SHARE) AND ${LIVE('$7')}
      ON CONFLICT (build_id, name) DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256, worker = EXCLUDED.worker, attempt = EXCLUDED.attempt
      RETURNING build_id`, [a.buildId, a.name, a.size, a.sha256, a.worker, attempt, this.id]);
    return r.length > 0;
  }

  async release(builds: { id: number; attempt: number }[], windowMs: number): Promise<void> {
    if (builds.length === 0) return;
    // Fenced like every other write: a master past its lease (its release was held up by a
    // partition) does not give its attempts a new window; the reaper has them already.
    await this.rows(`UPDATE builds SET holder = NULL, orphan_until = now() + $4::interval
      WHERE holder = $1 AND ${RUNNING} AND (id, attempt) IN (SELECT * FROM unnest($2::bigint[], $3::int[])) AND ${LIVE('$1')}`,
    [this.id, builds.map((b) => b.id), builds.map((b) => b.attempt), ms(windowMs)]);
  }

  async adopt(id: number, attempt: number, worker: string): Promise<BuildRow | null> {
    // Only the worker the attempt was given to (its name is the authenticated token's) can
    // bring it here, and only while the attempt is still current.
    const [r] = await this.rows(`UPDATE builds SET holder = $4, orphan_until = NULL
      WHERE id = $1 AND attempt = $2 AND worker = $3 AND ${RUNNING} AND ${LIVE('$4')} RETURNING *`, [id, attempt, worker, this.id]);
    return r ? buildFromRow(r) : null;
  }

  reap(maxAttempts: number, at: string): Promise<{ id: number; attempt: number; state: 'queued' | 'finished' }[]> {
    return this.run(async (c) => {
      await c.query('BEGIN');
      try {
        const r = await c.query<{ id: string; state: 'queued' | 'finished'; attempt: number }>(`WITH lost AS (
            SELECT id FROM builds b WHERE ${RUNNING} AND (
              (holder IS NULL AND (orphan_until IS NULL OR orphan_until < now()))
              OR (holder IS NOT NULL AND NOT ${LIVE('b.holder')}))
            FOR UPDATE SKIP LOCKED)
          UPDATE builds SET
            state = CASE WHEN attempt >= $1 THEN 'finished' ELSE 'queued' END,
            result = CASE WHEN attempt >= $1 THEN 'error' ELSE NULL END,
            finished_at = CASE WHEN attempt >= $1 THEN $2 ELSE NULL END,
            message = CASE WHEN attempt >= $1 THEN 'its master and worker were lost; gave up after ' || attempt || ' attempts'
              ELSE 'its master or worker was lost; requeued (attempt ' || attempt || ' of ' || $1 || ')' END,
            worker = CASE WHEN attempt >= $1 THEN worker ELSE NULL END,
            started_at = CASE WHEN attempt >= $1 THEN started_at ELSE NULL END,
            holder = NULL, orphan_until = NULL
          FROM lost WHERE builds.id = lost.id RETURNING builds.id, builds.state, builds.attempt`, [maxAttempts, at]);
        const requeued = r.rows.filter((x) => x.state === 'queued').map((x) => Number(x.id));
        if (requeued.length) {
          await c.query('DELETE FROM steps WHERE build_id = ANY($1::bigint[])', [requeued]);
          await c.query('SELECT pg_notify($1, $2)', [QUEUE_CHANNEL, 'reaped']);
        }
        await c.query('COMMIT');
        return r.rows.map((x) => ({ id: Number(x.id), attempt: Number(x.attempt), state: x.state }));
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      }
    });
  }

  async lease(name: string, leaseMs: number): Promise<boolean> {
    const r = await this.rows(`INSERT INTO leases (name, holder, expires_at) SELECT $1, $2, now() + $3::interval WHERE ${LIVE('$2')}
      ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
      WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= now() RETURNING holder`, [name, this.id, ms(leaseMs)]);
    return r.length > 0;
  }

  async unlease(name: string): Promise<void> {
    await this.rows('DELETE FROM leases WHERE name = $1 AND holder = $2', [name, this.id]);
  }

  async liveMasters(): Promise<string[]> {
    return (await this.rows('SELECT id FROM masters WHERE alive_until > now()', [])).map((r) => String(r.id));
  }

  async wake(): Promise<void> {
    // The payload names the sender, so that its own listener can let it pass (see onWake).
    await this.rows('SELECT pg_notify($1, $2)', [QUEUE_CHANNEL, this.id]);
  }

  async onWake(listener: () => void): Promise<() => Promise<void>> {
    let client: Client | null = null;
    let stopped = false;
    let retry: NodeJS.Timeout | null = null;
    const listen = async (): Promise<void> => {
      try {
        const c = await connectPostgres(this.url, (lost, why) => {
          if (client !== lost || stopped) return;
          client = null;
          this.log(`lost the LISTEN connection (${why.message}); listening again in 1s`);
          retry = setTimeout(() => void listen(), 1000);
          retry.unref();
        });
        // A master's own wake-up is not news to it: what it queued or requeued is in its queue
        // already. Hearing it would re-read every queued row once per build it queued (the
        // farm's whole queue each time, on the store's one ordered connection). Wake-ups from
        // other masters, and the reaper's ('reaped'), are heard.
        c.on('notification', (n) => { if (n.payload !== this.id) listener(); });
        await c.query(`LISTEN ${QUEUE_CHANNEL}`);
        client = c;
        if (stopped) await c.end().catch(() => undefined);
        // What was missed while not listening is read now.
        listener();
      } catch (e) {
        if (stopped) return;
        this.log(`cannot LISTEN for queue changes (${(e as Error).message}); trying again in 1s`);
        retry = setTimeout(() => void listen(), 1000);
        retry.unref();
      }
    };
    await listen();
    return async () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      const c = client;
      client = null;
      await c?.end().catch(() => undefined);
    };
  }
}

function newHolderId(): string {
  return `${hostname().slice(0, 40)}-${process.pid}-${randomBytes(4).toString('hex')}`;
}
