import type Database from 'better-sqlite3';
import { openSqlite } from './sqlite-open.js';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { MIGRATIONS, schemaTooNewError } from './migrations.js';
import {
  artifactFromRow, BUILD_COLUMNS, buildFromRow, capacityFromRow, creditDayFromRow, creditTotalFromRow, duplicateTokenMessage, inviteFromRow,
  oneTimeValues, stepFromRow, tokenFromRow, trustEventFromRow, verificationFromRow, volunteerFromRow, workerFlagFromRow, workerFromRow, type Row,
} from './rows.js';
import type {
  ArtifactRow, BuildPatch, BuildQuery, BuildRow, CapacityRow, CreditDayRow, CreditDelta, CreditTotalRow, EnrollOutcome, Enrollment, InviteRow,
  NewBuild, StepRow, Store, TokenRow, TrustChange, TrustEventRow, VerificationRow, VolunteerRow, WorkerFlagRow, WorkerRow,
} from './store.js';
import type { Verdict } from '../../protocol/api.js';

/** The embedded store: one SQLite file in WAL mode; survives restarts and crashes. */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly stmts;
  /** `updateBuild` statements by the columns they set (preparing one each time cost more than running it). */
  private readonly updates = new Map<string, Database.Statement>();
  /**
   * Prepared reads by their shape (how many ids, which filters): a dashboard's or a client's poll
   * of a build read its steps with a statement prepared anew each time (bench/README.md).
   */
  private readonly reads = new Map<string, Database.Statement>();

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = openSqlite(file, 'the SQLite store');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    const db = this.db;
    this.stmts = {
      insertToken: db.prepare('INSERT INTO tokens (name, hash, labels, max_builds, created_at, revoked_at, volunteer_id, worker_key, one_time, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      useOneTimeToken: db.prepare('UPDATE tokens SET used_at = ? WHERE name = ? AND one_time = 1 AND used_at IS NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)'),
      addCloudUsage: db.prepare(`INSERT INTO cloud_usage (provisioner, day, instance_ms) VALUES (?, ?, ?)
        ON CONFLICT (provisioner, day) DO UPDATE SET instance_ms = instance_ms + excluded.instance_ms`),
      listCloudUsage: db.prepare('SELECT day, instance_ms FROM cloud_usage WHERE provisioner = ? AND day >= ? ORDER BY day'),
      getToken: db.prepare('SELECT * FROM tokens WHERE name = ?'),
      listTokens: db.prepare('SELECT * FROM tokens ORDER BY name'),
      listRevokedTokenNames: db.prepare('SELECT name FROM tokens WHERE revoked_at IS NOT NULL'),
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
      putArtifact: db.prepare(`INSERT INTO artifacts (build_id, name, size, sha256, worker, attempt)
        VALUES (?, ?, ?, ?, ?, COALESCE(?, (SELECT attempt FROM builds WHERE id = ?)))
        ON CONFLICT (build_id, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, worker = excluded.worker, attempt = excluded.attempt`),
      listArtifacts: db.prepare(`SELECT a.* FROM artifacts a JOIN builds b ON b.id = a.build_id
        WHERE a.build_id = ? AND (a.attempt IS NULL OR a.attempt = b.attempt) ORDER BY a.name`),
      deleteArtifacts: db.prepare('DELETE FROM artifacts WHERE build_id = ? AND attempt = ?'),
      dropArtifacts: db.prepare('DELETE FROM artifacts WHERE build_id = ?'),
      insertVerification: db.prepare(`INSERT INTO verifications (build_id, group_id, replicas, verdict, detail) VALUES (?, ?, ?, 'pending', NULL)`),
      listVerifications: db.prepare('SELECT * FROM verifications WHERE group_id = ? ORDER BY build_id'),
      getVerification: db.prepare('SELECT * FROM verifications WHERE build_id = ?'),
      pendingVerifications: db.prepare(`SELECT * FROM verifications WHERE group_id IN
        (SELECT group_id FROM verifications WHERE verdict = 'pending') ORDER BY build_id`),
      setVerdict: db.prepare('UPDATE verifications SET verdict = ?, detail = ? WHERE build_id = ?'),
      flagWorker: db.prepare(`INSERT INTO worker_flags (worker, build_id, reason, at) VALUES (?, ?, ?, ?)
        ON CONFLICT (worker, build_id) DO UPDATE SET reason = excluded.reason, at = excluded.at`),
      listWorkerFlags: db.prepare('SELECT * FROM worker_flags ORDER BY worker, build_id'),
      insertInvite: db.prepare(`INSERT INTO invites (id, code_hash, labels, max_builds, max_uses, uses_left, expires_at, note, created_at, revoked_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      listInvites: db.prepare('SELECT * FROM invites ORDER BY created_at, id'),
      getInviteById: db.prepare('SELECT * FROM invites WHERE id = ?'),
      getInviteByHash: db.prepare('SELECT * FROM invites WHERE code_hash = ?'),
      revokeInvite: db.prepare('UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      spendInvite: db.prepare('UPDATE invites SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0'),
      insertVolunteer: db.prepare(`INSERT INTO volunteers (id, public_key, display_name, listed, trust, trust_source, streak, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      getVolunteer: db.prepare('SELECT * FROM volunteers WHERE id = ?'),
      getVolunteerByKey: db.prepare('SELECT * FROM volunteers WHERE public_key = ?'),
      updateVolunteerName: db.prepare('UPDATE volunteers SET display_name = ?, listed = ? WHERE id = ?'),
      listVolunteers: db.prepare('SELECT * FROM volunteers ORDER BY created_at, id'),
      setTrust: db.prepare('UPDATE volunteers SET trust = ?, trust_source = ?, streak = 0 WHERE id = ?'),
      setStreak: db.prepare('UPDATE volunteers SET streak = ? WHERE id = ?'),
      insertTrustEvent: db.prepare('INSERT INTO trust_events (volunteer_id, trust, previous, source, reason, at) VALUES (?, ?, ?, ?, ?, ?)'),
      listTrustEvents: db.prepare('SELECT * FROM trust_events WHERE volunteer_id = ? ORDER BY id'),
      addCreditDay: db.prepare(`INSERT INTO credit_days (day, worker, volunteer_id, builds, cpu_ms, wall_ms, agreed, disagreed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (day, worker) DO UPDATE SET volunteer_id = excluded.volunteer_id, builds = builds + excluded.builds,
        cpu_ms = cpu_ms + excluded.cpu_ms, wall_ms = wall_ms + excluded.wall_ms, agreed = agreed + excluded.agreed, disagreed = disagreed + excluded.disagreed`),
      addCreditTotal: db.prepare(`INSERT INTO credit_totals (worker, volunteer_id, builds, cpu_ms, wall_ms, agreed, disagreed) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (worker) DO UPDATE SET volunteer_id = excluded.volunteer_id, builds = builds + excluded.builds,
        cpu_ms = cpu_ms + excluded.cpu_ms, wall_ms = wall_ms + excluded.wall_ms, agreed = agreed + excluded.agreed, disagreed = disagreed + excluded.disagreed`),
      listCreditDays: db.prepare('SELECT * FROM credit_days WHERE day >= ? ORDER BY day, worker'),
      listCreditTotals: db.prepare('SELECT * FROM credit_totals ORDER BY worker'),
      pruneCreditDays: db.prepare('DELETE FROM credit_days WHERE day < ?'),
      addCapacity: db.prepare(`INSERT INTO capacity (hour_of_week, samples, workers_sum, workers_max) VALUES (?, 1, ?, ?)
        ON CONFLICT (hour_of_week) DO UPDATE SET samples = samples + 1, workers_sum = workers_sum + excluded.workers_sum,
        workers_max = MAX(workers_max, excluded.workers_max)`),
      listCapacity: db.prepare('SELECT * FROM capacity ORDER BY hour_of_week'),
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
      this.stmts.insertToken.run(row.name, row.hash, JSON.stringify(row.labels), row.maxBuilds, row.createdAt, row.revokedAt,
        row.volunteerId ?? null, row.workerKey ?? null, ...oneTimeValues(row));
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

  async deleteOneTimeTokens(names: string[]): Promise<number> {
    if (names.length === 0) return 0;
    return this.db.prepare(`DELETE FROM tokens WHERE one_time = 1 AND name IN (${names.map(() => '?').join(',')})`).run(...names).changes;
  }

  async listRevokedTokenNames(): Promise<string[]> {
    return (this.stmts.listRevokedTokenNames.all() as { name: string }[]).map((r) => r.name);
  }

  async revokeToken(name: string, at: string): Promise<boolean> {
    return this.stmts.revokeToken.run(at, name).changes > 0;
  }

  async setWorkerKey(name: string, key: string | null): Promise<boolean> {
    return this.db.prepare('UPDATE tokens SET worker_key = ? WHERE name = ? AND revoked_at IS NULL').run(key, name).changes > 0;
  }

  async useOneTimeToken(name: string, at: string): Promise<boolean> {
    return this.stmts.useOneTimeToken.run(at, name, at).changes > 0;
  }

  async addCloudUsage(provisioner: string, day: string, instanceMs: number): Promise<void> {
    this.stmts.addCloudUsage.run(provisioner, day, Math.round(instanceMs));
  }

  async listCloudUsage(provisioner: string, sinceDay: string): Promise<{ day: string; instanceMs: number }[]> {
    return (this.stmts.listCloudUsage.all(provisioner, sinceDay) as Row[]).map((r) => ({ day: String(r.day), instanceMs: Number(r.instance_ms) }));
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
    if (patch.state !== 'queued') { stmt.run(...keys.map((k) => patch[k] ?? null), id); return; }
    // Back in the queue: no attempt of it is accepted, so none of its artifacts may be listed.
    this.db.transaction(() => {
      stmt.run(...keys.map((k) => patch[k] ?? null), id);
      this.stmts.dropArtifacts.run(id);
    })();
  }

  /** A read statement kept by its text; at most 64 shapes are kept (pages have up to 1,000 ids: rare sizes are prepared each time). */
  private read(sql: string): Database.Statement {
    const kept = this.reads.get(sql);
    if (kept) return kept;
    const stmt = this.db.prepare(sql);
    if (this.reads.size < 64) this.reads.set(sql, stmt);
    return stmt;
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
    return (this.read(sql).all(...args, q.limit) as Row[]).map(buildFromRow);
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
    const rows = this.read(`SELECT * FROM steps WHERE build_id IN (${buildIds.map(() => '?').join(',')}) ORDER BY build_id, idx`)
      .all(...buildIds) as Row[];
    return rows.map(stepFromRow);
  }

  async putArtifact(a: ArtifactRow): Promise<void> {
    this.stmts.putArtifact.run(a.buildId, a.name, a.size, a.sha256, a.worker, a.attempt ?? null, a.buildId);
  }

  async deleteArtifacts(buildId: number, attempt: number): Promise<void> {
    this.stmts.deleteArtifacts.run(buildId, attempt);
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

  async createInvite(i: InviteRow): Promise<void> {
    this.stmts.insertInvite.run(i.id, i.codeHash, JSON.stringify(i.labels), i.maxBuilds, i.maxUses, i.usesLeft, i.expiresAt, i.note, i.createdAt, i.revokedAt);
  }

  async listInvites(): Promise<InviteRow[]> {
    return (this.stmts.listInvites.all() as Row[]).map(inviteFromRow);
  }

  async getInviteByCodeHash(codeHash: string): Promise<InviteRow | null> {
    const r = this.stmts.getInviteByHash.get(codeHash) as Row | undefined;
    return r ? inviteFromRow(r) : null;
  }

  async revokeInvite(id: string, at: string): Promise<boolean> {
    return this.stmts.revokeInvite.run(at, id).changes > 0;
  }

  async enroll(e: Enrollment): Promise<EnrollOutcome> {
    const refused = (reason: Extract<EnrollOutcome, { ok: false }>['reason']) => ({ ok: false as const, reason });
    return this.db.transaction((): EnrollOutcome => {
      if (e.inviteId !== null) {
        const r = this.stmts.getInviteById.get(e.inviteId) as Row | undefined;
        if (!r) return refused('unknown-code');
        const inv = inviteFromRow(r);
        if (inv.revokedAt) return refused('revoked');
        if (inv.expiresAt !== null && inv.expiresAt <= e.at) return refused('expired');
        if (inv.usesLeft <= 0) return refused('used-up');
      }
      if (this.stmts.getToken.get(e.token.name)) return refused('name-taken');
      const found = this.stmts.getVolunteerByKey.get(e.volunteer.publicKey) as Row | undefined;
      let volunteer: VolunteerRow;
      if (found) {
        volunteer = volunteerFromRow(found);
        if (volunteer.trust === 'banned') return refused('banned');
        this.stmts.updateVolunteerName.run(e.volunteer.displayName, e.volunteer.listed ? 1 : 0, volunteer.id);
        volunteer = { ...volunteer, displayName: e.volunteer.displayName, listed: e.volunteer.listed };
      } else {
        volunteer = e.volunteer;
        const v = volunteer;
        this.stmts.insertVolunteer.run(v.id, v.publicKey, v.displayName, v.listed ? 1 : 0, v.trust, v.trustSource, v.streak, v.createdAt);
        this.stmts.insertTrustEvent.run(v.id, v.trust, null, v.trustSource, e.reason, e.at);
      }
      const t = { ...e.token, volunteerId: volunteer.id };
      this.stmts.insertToken.run(t.name, t.hash, JSON.stringify(t.labels), t.maxBuilds, t.createdAt, t.revokedAt, t.volunteerId, t.workerKey ?? null, 0, null);
      if (e.inviteId !== null) this.stmts.spendInvite.run(e.inviteId);
      return { ok: true, volunteer };
    })();
  }

  async getVolunteer(id: string): Promise<VolunteerRow | null> {
    const r = this.stmts.getVolunteer.get(id) as Row | undefined;
    return r ? volunteerFromRow(r) : null;
  }

  async listVolunteers(): Promise<VolunteerRow[]> {
    return (this.stmts.listVolunteers.all() as Row[]).map(volunteerFromRow);
  }

  async setTrust(c: TrustChange): Promise<void> {
    this.db.transaction(() => {
      const r = this.stmts.getVolunteer.get(c.volunteerId) as Row | undefined;
      if (!r) throw new Error(`no volunteer ${c.volunteerId}`);
      this.stmts.setTrust.run(c.trust, c.source, c.volunteerId);
      this.stmts.insertTrustEvent.run(c.volunteerId, c.trust, String(r.trust), c.source, c.reason, c.at);
    })();
  }

  async setStreak(volunteerId: string, streak: number): Promise<void> {
    this.stmts.setStreak.run(streak, volunteerId);
  }

  async listTrustEvents(volunteerId: string): Promise<TrustEventRow[]> {
    return (this.stmts.listTrustEvents.all(volunteerId) as Row[]).map(trustEventFromRow);
  }

  async addCredit(d: CreditDelta): Promise<void> {
    this.db.transaction(() => {
      this.stmts.addCreditDay.run(d.day, d.worker, d.volunteerId, d.builds, d.cpuMs, d.wallMs, d.agreed, d.disagreed);
      this.stmts.addCreditTotal.run(d.worker, d.volunteerId, d.builds, d.cpuMs, d.wallMs, d.agreed, d.disagreed);
    })();
  }

  async listCreditDays(sinceDay: string): Promise<CreditDayRow[]> {
    return (this.stmts.listCreditDays.all(sinceDay) as Row[]).map(creditDayFromRow);
  }

  async listCreditTotals(): Promise<CreditTotalRow[]> {
    return (this.stmts.listCreditTotals.all() as Row[]).map(creditTotalFromRow);
  }

  async pruneCreditDays(day: string): Promise<void> {
    this.stmts.pruneCreditDays.run(day);
  }

  async addCapacitySample(hourOfWeek: number, workers: number): Promise<void> {
    this.stmts.addCapacity.run(hourOfWeek, workers, workers);
  }

  async listCapacity(): Promise<CapacityRow[]> {
    return (this.stmts.listCapacity.all() as Row[]).map(capacityFromRow);
  }
}
