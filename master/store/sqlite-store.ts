import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { MIGRATIONS, schemaTooNewError } from './migrations.js';
import {
  artifactFromRow, BUILD_COLUMNS, buildFromRow, duplicateTokenMessage, stepFromRow, tokenFromRow, verificationFromRow,
  workerFlagFromRow, workerFromRow, type Row,
} from './rows.js';
import type {
  ArtifactRow, BuildPatch, BuildQuery, BuildRow, NewBuild, StepRow, Store, TokenRow, VerificationRow, WorkerFlagRow, WorkerRow,
} from './store.js';
import type { Verdict } from '../../protocol/api.js';

/** The embedded store: one SQLite file in WAL mode; survives restarts and crashes. */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly stmts;
  /** `updateBuild` statements by the columns they set (preparing one each time cost more than running it). */
  private readonly updates = new Map<string, Database.Statement>();

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    try {
      this.db = new Database(file);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
      this.db.pragma('foreign_keys = ON');
    } catch (e) {
      throw new Error(`cannot open the SQLite store ${file}: ${(e as Error).message}`);
    }
    this.migrate();
    const db = this.db;
    this.stmts = {
      insertToken: db.prepare('INSERT INTO tokens (name, hash, labels, max_builds, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)'),
      getToken: db.prepare('SELECT * FROM tokens WHERE name = ?'),
      listTokens: db.prepare('SELECT * FROM tokens ORDER BY name'),
      revokeToken: db.prepare('UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL'),
      upsertWorker: db.prepare(`INSERT INTO workers (name, capabilities, last_seen_at) VALUES (?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET capabilities = excluded.capabilities, last_seen_at = excluded.last_seen_at`),
      listWorkers: db.prepare('SELECT * FROM workers ORDER BY name'),
      insertBuild: db.prepare(`INSERT INTO builds (builder, revision, reason, state, attempt, queued_at, branch, trigger_kind, rebuild_of)
        VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?) RETURNING *`),
      getBuild: db.prepare('SELECT * FROM builds WHERE id = ?'),
      unfinished: db.prepare(`SELECT * FROM builds WHERE state <> 'finished' ORDER BY id`),
      putStep: db.prepare(`INSERT INTO steps (build_id, idx, name, state, result, exit_code) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (build_id, idx) DO UPDATE SET name = excluded.name, state = excluded.state,
        result = excluded.result, exit_code = excluded.exit_code`),
      clearSteps: db.prepare('DELETE FROM steps WHERE build_id = ?'),
      putArtifact: db.prepare(`INSERT INTO artifacts (build_id, name, size, sha256, worker) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (build_id, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, worker = excluded.worker`),
      listArtifacts: db.prepare('SELECT * FROM artifacts WHERE build_id = ? ORDER BY name'),
      insertVerification: db.prepare(`INSERT INTO verifications (build_id, group_id, replicas, verdict, detail) VALUES (?, ?, ?, 'pending', NULL)`),
      listVerifications: db.prepare('SELECT * FROM verifications WHERE group_id = ? ORDER BY build_id'),
      getVerification: db.prepare('SELECT * FROM verifications WHERE build_id = ?'),
      pendingVerifications: db.prepare(`SELECT * FROM verifications WHERE group_id IN
        (SELECT group_id FROM verifications WHERE verdict = 'pending') ORDER BY build_id`),
      setVerdict: db.prepare('UPDATE verifications SET verdict = ?, detail = ? WHERE build_id = ?'),
      flagWorker: db.prepare(`INSERT INTO worker_flags (worker, build_id, reason, at) VALUES (?, ?, ?, ?)
        ON CONFLICT (worker, build_id) DO UPDATE SET reason = excluded.reason, at = excluded.at`),
      listWorkerFlags: db.prepare('SELECT * FROM worker_flags ORDER BY worker, build_id'),
    };
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const row = this.db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined;
    const current = row?.version ?? 0;
    if (current > MIGRATIONS.length) {
      throw schemaTooNewError(current);
    }
    const apply = this.db.transaction(() => {
      for (let v = current; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v]!.sqlite);
      this.db.prepare('DELETE FROM schema_version').run();
      this.db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(MIGRATIONS.length);
    });
    if (current < MIGRATIONS.length) apply();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  async createToken(row: TokenRow): Promise<void> {
    try {
      this.stmts.insertToken.run(row.name, row.hash, JSON.stringify(row.labels), row.maxBuilds, row.createdAt, row.revokedAt);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new Error(duplicateTokenMessage(row.name));
      throw e;
    }
  }

  async getToken(name: string): Promise<TokenRow | null> {
    const r = this.stmts.getToken.get(name) as Row | undefined;
    return r ? tokenFromRow(r) : null;
  }

  async listTokens(): Promise<TokenRow[]> {
    return (this.stmts.listTokens.all() as Row[]).map(tokenFromRow);
  }

  async revokeToken(name: string, at: string): Promise<boolean> {
    return this.stmts.revokeToken.run(at, name).changes > 0;
  }

  async upsertWorker(row: WorkerRow): Promise<void> {
    this.stmts.upsertWorker.run(row.name, row.capabilities, row.lastSeenAt);
  }

  async listWorkers(): Promise<WorkerRow[]> {
    return (this.stmts.listWorkers.all() as Row[]).map(workerFromRow);
  }

  async insertBuild(row: NewBuild): Promise<BuildRow> {
    return this.insertOne(row);
  }

  /**
   * `all()`, not `get()`: an INSERT … RETURNING commits only when stepped to its end, and
   * `get()` stops after the first row and resets the statement without reporting a commit
   * that failed (SQLITE_FULL on a full disk): the id was handed out and the row was gone.
   */
  private insertOne(row: NewBuild): BuildRow {
    const [r] = this.stmts.insertBuild.all(
      row.builder, row.revision, row.reason, row.queuedAt, row.branch ?? null, row.trigger ?? 'force', row.rebuildOf ?? null) as Row[];
    return buildFromRow(r!);
  }

  async updateBuild(id: number, patch: BuildPatch): Promise<void> {
    const keys = Object.keys(patch) as (keyof BuildPatch)[];
    if (keys.length === 0) return;
    const key = keys.join(',');
    let stmt = this.updates.get(key);
    if (!stmt) {
      stmt = this.db.prepare(`UPDATE builds SET ${keys.map((k) => `${BUILD_COLUMNS[k]} = ?`).join(', ')} WHERE id = ?`);
      this.updates.set(key, stmt);
    }
    stmt.run(...keys.map((k) => patch[k] ?? null), id);
  }

  async getBuild(id: number): Promise<BuildRow | null> {
    const r = this.stmts.getBuild.get(id) as Row | undefined;
    return r ? buildFromRow(r) : null;
  }

  async listBuilds(q: BuildQuery): Promise<BuildRow[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.builder !== undefined) { where.push('builder = ?'); args.push(q.builder); }
    if (q.state !== undefined) { where.push('state = ?'); args.push(q.state); }
    if (q.beforeId !== undefined) { where.push('id < ?'); args.push(q.beforeId); }
    const sql = `SELECT * FROM builds ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, q.limit) as Row[]).map(buildFromRow);
  }

  async listUnfinishedBuilds(): Promise<BuildRow[]> {
    return (this.stmts.unfinished.all() as Row[]).map(buildFromRow);
  }

  async putStep(s: StepRow): Promise<void> {
    this.stmts.putStep.run(s.buildId, s.index, s.name, s.state, s.result, s.exitCode);
  }

  async clearSteps(buildId: number): Promise<void> {
    this.stmts.clearSteps.run(buildId);
  }

  async listSteps(buildIds: number[]): Promise<StepRow[]> {
    if (buildIds.length === 0) return [];
    const rows = this.db.prepare(`SELECT * FROM steps WHERE build_id IN (${buildIds.map(() => '?').join(',')}) ORDER BY build_id, idx`)
      .all(...buildIds) as Row[];
    return rows.map(stepFromRow);
  }

  async putArtifact(a: ArtifactRow): Promise<void> {
    this.stmts.putArtifact.run(a.buildId, a.name, a.size, a.sha256, a.worker);
  }

  async listArtifacts(buildId: number): Promise<ArtifactRow[]> {
    return (this.stmts.listArtifacts.all(buildId) as Row[]).map(artifactFromRow);
  }

  async insertBuildGroup(rows: NewBuild[]): Promise<BuildRow[]> {
    return this.db.transaction(() => {
      const out = rows.map((r) => this.insertOne(r));
      for (const b of out) this.stmts.insertVerification.run(b.id, out[0]!.id, out.length);
      return out;
    })();
  }

  async listVerifications(groupId: number): Promise<VerificationRow[]> {
    return (this.stmts.listVerifications.all(groupId) as Row[]).map(verificationFromRow);
  }

  async getVerification(buildId: number): Promise<VerificationRow | null> {
    const r = this.stmts.getVerification.get(buildId) as Row | undefined;
    return r ? verificationFromRow(r) : null;
  }

  async listPendingVerifications(): Promise<VerificationRow[]> {
    return (this.stmts.pendingVerifications.all() as Row[]).map(verificationFromRow);
  }

  async setVerdict(buildId: number, verdict: Verdict, detail: string | null): Promise<void> {
    this.stmts.setVerdict.run(verdict, detail, buildId);
  }

  async flagWorker(f: WorkerFlagRow): Promise<void> {
    this.stmts.flagWorker.run(f.worker, f.buildId, f.reason, f.at);
  }

  async listWorkerFlags(): Promise<WorkerFlagRow[]> {
    return (this.stmts.listWorkerFlags.all() as Row[]).map(workerFlagFromRow);
  }
}
