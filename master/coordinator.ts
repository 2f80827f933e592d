import type { BuildOutcome, BuildTrigger, BuildView, StepView, VerificationView } from '../protocol/api.js';
import type { BuilderDefinition } from '../protocol/builder-file.js';
import { allStepNames, type ExecutorKind } from '../protocol/build-spec.js';
import type { Capabilities, MasterMessage, WorkerMessage } from '../protocol/worker-messages.js';
import { assertNever } from '../protocol/assert-never.js';
import type { ArtifactStore } from './artifact-store.js';
import type { EventBus } from './events.js';
import type { LogStore } from './log-store.js';
import { workerView } from './views.js';
import { pickWorker, type WorkerOffer } from './matching.js';
import type { BuildPatch, BuildRow, StepRow, Store } from './store/store.js';
import type { Verification } from './verification.js';
import { BuildWrites, isDiskFull } from './disk-space.js';
import { BuildUsage, DEFAULT_BUILD_CAPS, type BuildCaps } from './worker-bounds.js';
import { BuildDeadlines } from './build-deadlines.js';
import { log } from './log.js';
import type { AttemptFinish } from './provenance/attestations.js';
import { boundCpuClaim, grantedCores } from './cpu-claim.js';
import type { FewerReplicas } from './fewer-replicas.js';

/** The builders the coordinator can see (the registry of builder files). */
export interface BuilderLookup {
  get(name: string): BuilderDefinition | null;
}

/** A connected, authenticated worker, as the worker hub hands it over. */
export interface WorkerSession extends WorkerOffer {
  /** Builds assigned to this worker that it has not yet reported finished. */
  readonly builds: Set<number>;
  readonly frozen: Set<number>;
  readonly capabilities: Capabilities;
  /** False while the volunteer's desktop is in use, paused, outside its schedule, …; `reason` says which. */
  accepting: boolean;
  reason: string;
  /** [cloud] Set once the worker is leaving (its `drain`, or the admin's): it gets nothing new. */
  draining?: { now: boolean; reason: string } | null;
  /** [cloud] Builds it may still be given (a one-time credential's session: 1); absent: no limit. */
  buildsLeft?: number;
  /** [cloud] A cloud worker (logged in with a one-time credential): `cloud: never` builders are not sent there. */
  cloud?: boolean;
  send(message: MasterMessage): void;
  close(why: string): void;
}

interface ActiveBuild {
  row: BuildRow;
  session: WorkerSession;
  steps: StepView[];
  /** What this attempt has put on the master, checked against the spec and the caps. */
  usage: BuildUsage;
  /** Runs out when the build has been frozen longer than its builder allows. */
  frozenTimer?: NodeJS.Timeout | undefined;
  /** [provenance] The spec sent with this attempt and the artifacts it uploaded, that its statement must match. */
  sent?: unknown;
  received?: { name: string; size: number; sha256: string }[];
}

export interface BuildRequest {
  revision?: string;
  reason?: string;
  /** The branch to clone; default the builder's. */
  branch?: string;
  trigger?: BuildTrigger;
  rebuildOf?: number;
}

export class NotFoundError extends Error {}
export class ConflictError extends Error {}

const now = () => new Date().toISOString();

/**
 * Owns every build's lifecycle on the master: request -> queue -> assign -> running/frozen ->
 * finished, and requeue when a worker is lost (bounded by `maxAttempts`).
 *
 * Invariants: the queue is ordered by build id (oldest first, requeued builds keep their
 * place); a message about a build is applied only when it comes from the worker and attempt
 * the build is currently assigned to; every state change is written to the store in the
 * order it happens and then published on the event bus.
 */
export class Coordinator {
  /** Queued builds per builder, each list oldest first. */
  private readonly queues = new Map<string, BuildRow[]>();
  private queued = 0;
  /** Running builds per builder, for fair share. */
  private readonly runningPer = new Map<string, number>();
  private readonly active = new Map<number, ActiveBuild>();
  private readonly sessions = new Map<string, WorkerSession>();
  private dispatchScheduled = false;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly builders: BuilderLookup,
    private readonly logs: LogStore,
    private readonly artifacts: ArtifactStore,
    private readonly events: EventBus,
    private readonly options: {
      maxAttempts: number;
      onSessionsChanged?: () => void;
      /** Builders with queued builds that no connected worker could take (latent workers start on this). */
      onUnplaced?: (builders: BuilderDefinition[]) => void;
      /** Replicated builds (`verify: { replicas }`): groups, worker exclusion, verdicts. */
      verification?: Verification;
      /** Why no build may start now (the master's disk is full), or null. */
      cannotStart?: () => string | null;
      /** Per-build caps and master-side time limits (crowdbake.yml `limits:`). */
      caps?: BuildCaps;
      /** [cloud] Whether a queued build may go to a cloud worker yet (it waited burstAfter, or its builder prefers the cloud). */
      mayUseCloud?: (row: BuildRow, builder: BuilderDefinition) => boolean;
      /** Counts each build that ran on a worker ([crowd] credit, master/credit.ts). */
      credit?: { buildFinished(row: BuildRow, cpuMs?: number): Promise<void> };
      /** [provenance] Checks a successful attempt's signed statement (master/provenance/attestations.ts); a reason refuses it. */
      provenance?: { accept(f: AttemptFinish): Promise<string | null> };
      /** [crowd] Drops replicas a reliable volunteer's result makes unneeded (master/fewer-replicas.ts). */
      fewerReplicas?: FewerReplicas;
    },
  ) {
    this.writes = new BuildWrites(store, logError);
    this.caps = options.caps ?? DEFAULT_BUILD_CAPS;
    this.deadlines = new BuildDeadlines((id, why) => {
      const a = this.active.get(id);
      if (a) void this.expel(a, why).catch(logError);
    });
    this.stallSweep = setInterval(() => this.dropStalledUploads(), Math.max(50, Math.min(this.caps.uploadStallMs / 2, 30_000)));
    this.stallSweep.unref();
  }

  private readonly caps: BuildCaps;
  private readonly deadlines: BuildDeadlines;
  private readonly stallSweep: NodeJS.Timeout;
  /** Workers a build must not go back to (they broke its bounds), by build id. */
  private readonly barred = new Map<number, Set<string>>();

  /** Build-row changes, kept and retried when the disk is full. */
  private readonly writes: BuildWrites;

  /** Loads unfinished builds after a (re)start: queued ones keep their place; running ones lost their worker. */
  async recover(): Promise<void> {
    for (const row of await this.store.listUnfinishedBuilds()) {
      if (row.state === 'queued') this.enqueue(row);
      else await this.requeueLost(row, 'the master restarted while it ran');
    }
    this.scheduleDispatch();
  }

  /**
   * Queues a build (or, when the builder asks for verification, one build per replica). A
   * `change` build (a new commit seen by a change source) supersedes the queued, not yet
   * started `change` builds of the same builder and branch when the builder collapses (the
   * default); forced builds and rebuilds neither supersede nor are superseded.
   */
  async requestBuild(builder: string, opts: BuildRequest): Promise<BuildRow> {
    const def = this.builders.get(builder);
    if (!def) throw new NotFoundError(`no builder named "${builder}"`);
    const trigger = opts.trigger ?? 'force';
    const build = {
      builder, revision: opts.revision ?? null, reason: opts.reason ?? null, queuedAt: now(),
      branch: opts.branch ?? null, trigger, rebuildOf: opts.rebuildOf ?? null,
    };
    const verification = this.options.verification;
    const rows = def.verify && verification ? await verification.createGroup(build, def.verify.replicas) : [await this.store.insertBuild(build)];
    if (trigger === 'change' && def.collapse) await this.supersedeOlder(rows[0]!, def);
    for (const row of rows) {
      this.enqueue(row);
      this.publishBuild(row, []);
    }
    this.scheduleDispatch();
    return rows[0]!;
  }

  /** Queues a new build of the same builder, at the same revision and branch, linked to the old one. */
  async rebuild(id: number): Promise<BuildRow> {
    const old = await this.store.getBuild(id);
    if (!old) throw new NotFoundError(`no build ${id}`);
    if (!this.builders.get(old.builder)) throw new ConflictError(`builder "${old.builder}" of build ${id} no longer exists`);
    return this.requestBuild(old.builder, {
      ...(old.revision !== null ? { revision: old.revision } : {}),
      ...(old.branch !== null ? { branch: old.branch } : {}),
      reason: `rebuild of #${id}`, trigger: 'rebuild', rebuildOf: id,
    });
  }

  /** Marks the queued, never started change builds of `newer`'s builder and branch superseded by it (a requeued one ran already: it is kept). */
  private async supersedeOlder(newer: BuildRow, def: BuilderDefinition): Promise<void> {
    const branchOf = (b: BuildRow) => b.branch ?? def.source?.branch ?? null;
    const older = (this.queues.get(newer.builder) ?? [])
      .filter((b) => b.id < newer.id && b.trigger === 'change' && b.attempt === 0 && branchOf(b) === branchOf(newer));
    for (const b of older) {
      if (!this.dequeue(b.id)) continue;
      const rev = newer.revision ? ` (${newer.revision.slice(0, 12)})` : '';
      await this.finish(b, 'superseded', `superseded by build ${newer.id}${rev}, a newer commit on ${branchOf(newer) ?? 'the branch'}`, [], { supersededBy: newer.id });
    }
  }

  async cancel(id: number): Promise<void> {
    const queued = this.dequeue(id);
    if (queued) {
      await this.finish(queued, 'cancelled', 'cancelled while queued', []);
      return;
    }
    const a = this.active.get(id);
    if (a) {
      a.session.send({ type: 'cancel', buildId: id, attempt: a.row.attempt, reason: 'cancelled by a user' });
      this.deactivate(id);
      this.note(id, '\n*** build cancelled by a user ***\n');
      await this.finish(a.row, 'cancelled', 'cancelled while running', a.steps);
      return;
    }
    const row = await this.store.getBuild(id);
    if (!row) throw new NotFoundError(`no build ${id}`);
    throw new ConflictError(`build ${id} has already finished`);
  }

  addSession(session: WorkerSession): void {
    this.sessions.set(session.name, session);
    this.options.onSessionsChanged?.();
    this.scheduleDispatch();
  }

  /** Tells dashboards a worker's state changed (busy, idle, frozen). */
  private publishWorker(session: WorkerSession): void {
    if (this.events.size === 0 || this.sessions.get(session.name) !== session) return;
    this.events.publish({ type: 'worker', worker: workerView(session.name, session.capabilities, session) });
  }

  /** The worker's connection is gone: its builds go back to the queue (or fail after too many attempts). */
  async removeSession(session: WorkerSession): Promise<void> {
    if (this.sessions.get(session.name) === session) this.sessions.delete(session.name);
    for (const id of session.builds) {
      const a = this.active.get(id);
      if (!a || a.session !== session) continue;
      this.deactivate(id);
      if (a.frozenTimer) clearTimeout(a.frozenTimer);
      this.artifacts.abortBuild(id);
      await this.requeueLost(a.row, `worker ${session.name} disconnected`);
    }
    session.builds.clear();
    this.options.onSessionsChanged?.();
    this.scheduleDispatch();
  }

  session(name: string): WorkerSession | undefined {
    return this.sessions.get(name);
  }

  connectedSessions(): IterableIterator<WorkerSession> {
    return this.sessions.values();
  }

  queuedCount(): number {
    return this.queued;
  }

  /** [cloud] The queued builds, per builder oldest first (the cloud pool sizes itself on them). */
  *queuedBuilds(): Iterable<BuildRow> {
    for (const q of this.queues.values()) yield* q;
  }

  /**
   * [cloud] The admin asks a worker to leave (REST drain): it gets nothing new from now on and
   * is told to disconnect once its builds are done; `now` requeues them at once.
   */
  async drainWorker(name: string, now: boolean): Promise<boolean> {
    const session = this.sessions.get(name);
    if (!session) return false;
    const reason = now ? 'the admin asked it to stop now' : 'the admin asked it to leave after its builds';
    session.send({ type: 'drain', now, reason });
    await this.drain(session, now, reason);
    return true;
  }

  /**
   * A worker is leaving. Runs on the master on the worker's word (its `drain` message) or the
   * admin's. Safe on a worker's word: it can only take work away from itself — it gets no new
   * builds, and with `now` its own current builds are requeued (as if it had disconnected,
   * but not counted as a failed attempt, up to maxAttempts such retries a build: a worker
   * that keeps giving builds back cannot keep one queued for ever).
   */
  private async drain(session: WorkerSession, now: boolean, reason: string): Promise<void> {
    session.draining = { now: now || (session.draining?.now ?? false), reason };
    session.accepting = false;
    session.reason = `draining: ${reason}`;
    if (now) {
      for (const id of [...session.builds]) {
        const a = this.active.get(id);
        if (!a || a.session !== session) continue;
        session.send({ type: 'cancel', buildId: id, attempt: a.row.attempt, reason: `requeued: ${reason}` });
        this.deactivate(id);
        if (a.frozenTimer) clearTimeout(a.frozenTimer);
        session.builds.delete(id);
        session.frozen.delete(id);
        this.artifacts.abortBuild(id);
        await this.requeueLost(a.row, `worker ${session.name} is draining (${reason})`, true);
      }
    }
    this.publishWorker(session);
    this.options.onSessionsChanged?.();
    this.scheduleDispatch();
  }

  /** Applies one validated message from an authenticated worker. */
  async handle(session: WorkerSession, msg: Exclude<WorkerMessage, { type: 'hello' }>): Promise<void> {
    if (msg.type === 'drain') return this.drain(session, msg.now, msg.reason);
    if (msg.type === 'availability') {
      // A leaving worker, or a one-time credential's whose build was given, stays closed.
      if (session.draining || session.buildsLeft === 0) return;
      session.accepting = msg.accepting;
      session.reason = msg.reason;
      this.publishWorker(session);
      if (msg.accepting) this.scheduleDispatch();
      return;
    }
    const a = this.active.get(msg.buildId);
    const current = a !== undefined && a.session === session && a.row.attempt === msg.attempt;
    if (!current) {
      // A late message for a build that was cancelled, requeued or finished: only free the slot.
      if (msg.type === 'state' && msg.state === 'finished' && session.builds.delete(msg.buildId)) {
        this.publishWorker(session);
        this.scheduleDispatch();
      }
      return;
    }
    try {
      await this.apply(session, a, msg);
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      await this.stopForFullDisk(a, e as Error);
    }
  }

  /**
   * The master's disk filled up under a running build (its log, an artifact or its rows
   * could not be written): the build is stopped on its worker and ends with an error naming
   * the problem, rather than go on with a log or artifacts that have holes.
   */
  private async stopForFullDisk(a: ActiveBuild, e: Error): Promise<void> {
    await this.stopWithError(a, `the master's disk is full (${e.message}); the build was stopped`);
  }

  /** Stops a running build on its worker and ends it with `message` (in its log and as its error). */
  private async stopWithError(a: ActiveBuild, message: string): Promise<void> {
    if (this.active.get(a.row.id) !== a) return;
    a.session.send({ type: 'cancel', buildId: a.row.id, attempt: a.row.attempt, reason: message });
    this.deactivate(a.row.id);
    if (a.frozenTimer) clearTimeout(a.frozenTimer);
    this.note(a.row.id, `\n*** ${message} ***\n`);
    await this.finish(a.row, 'error', message, a.steps);
  }

  private async apply(session: WorkerSession, a: ActiveBuild, msg: Exclude<WorkerMessage, { type: 'hello' | 'availability' | 'drain' }>): Promise<void> {
    // Every index, count and size a worker sends is checked against this build's spec and the
    // master's caps here, before it touches an array, a file or a row (master/worker-bounds.ts).
    const bound = a.usage.check(msg);
    if (bound?.kind === 'ignore') return;
    if (bound?.kind === 'violation') {
      const message = `${bound.field}: ${bound.message}`;
      session.send({ type: 'error', message: `build ${a.row.id}: ${message}`, fatal: false });
      await this.expel(a, `sent a message outside the build's spec (${message})`);
      return;
    }
    if (bound?.kind === 'cap') {
      await this.stopWithError(a, bound.message);
      return;
    }
    switch (msg.type) {
      case 'accepted':
        return;
      case 'log':
        this.appendLog(msg.buildId, msg.data);
        return;
      case 'revision':
        // A build asked for without a revision (a branch's head) becomes that exact commit, so
        // a later attempt or a rebuild builds the same one. A revision that was asked for stays.
        if (a.row.revision !== null) return;
        a.row.revision = msg.revision;
        await this.writes.update(a.row.id, { revision: msg.revision });
        this.publishBuild(a.row, a.steps);
        return;
      case 'step': {
        // msg.index < the spec's step count (checked above); the name is the spec's, not the worker's.
        const view: StepView = { name: a.steps[msg.index]?.name ?? msg.name, state: msg.state, result: msg.result, exitCode: msg.exitCode };
        a.steps[msg.index] = view;
        await this.store.putStep({ buildId: msg.buildId, index: msg.index, ...view });
        this.publishBuild(a.row, a.steps);
        return;
      }
      case 'artifact': {
        let done: boolean;
        try {
          done = this.artifacts.receive({ ...msg, data: Buffer.from(msg.data, 'base64') });
        } catch (e) {
          if (isDiskFull(e)) throw e;
          a.usage.uploadEnded(msg.name);
          this.appendLog(msg.buildId, `\n*** artifact refused: ${(e as Error).message} ***\n`);
          return;
        }
        if (done) {
          await this.store.putArtifact({ buildId: msg.buildId, name: msg.name, size: msg.size, sha256: msg.sha256, worker: session.name });
          (a.received ??= []).push({ name: msg.name, size: msg.size, sha256: msg.sha256 });
        }
        return;
      }
      case 'state':
        return this.onState(session, a, msg);
      default:
        assertNever(msg, 'worker message');
    }
  }

  private async onState(session: WorkerSession, a: ActiveBuild, msg: Extract<WorkerMessage, { type: 'state' }>): Promise<void> {
    if (msg.state === 'finished') {
      // [provenance] A successful attempt's statement is checked on the master against the key
      // enrolled for this worker and what it uploaded (attestations.ts); a mismatch is refused
      // like any message outside the spec: requeued elsewhere, the worker flagged, its bytes removed.
      const why = msg.result === 'success' && this.options.provenance ? await this.options.provenance.accept({
        row: a.row, worker: session.name, sent: a.sent, received: a.received ?? [], envelope: msg.provenance,
        required: this.builders.get(a.row.builder)?.provenance === 'required',
      }) : null;
      // Cancelled or expelled while the statement was checked: that path ended the build; this end frees the slot.
      if (this.active.get(a.row.id) !== a) {
        if (session.builds.delete(a.row.id)) { this.publishWorker(session); this.scheduleDispatch(); }
        return;
      }
      if (why) {
        for (const r of a.received ?? []) this.artifacts.discard(a.row.id, r.name);
        session.builds.delete(a.row.id);
        await this.expel(a, why);
        return;
      }
      if (a.frozenTimer) clearTimeout(a.frozenTimer);
      this.deactivate(a.row.id);
      session.builds.delete(a.row.id);
      session.frozen.delete(a.row.id);
      // The worker's CPU time is its claim: bounded by wall time × the cores granted (cpu-claim.ts).
      const cpuMs = msg.cpuMs === undefined ? undefined : this.boundedCpu(a, msg.cpuMs);
      await this.finish(a.row, msg.result ?? 'error', msg.message, a.steps, {}, cpuMs);
      this.publishWorker(session);
      this.scheduleDispatch();
      return;
    }
    // The master's deadline does not count frozen time; frozen time has a budget of its own.
    this.deadlines.setFrozen(a.row.id, msg.state === 'frozen');
    if (msg.state === 'frozen') {
      session.frozen.add(a.row.id);
      const maxFrozenMs = this.builders.get(a.row.builder)?.spec.limits.maxFrozenMs;
      if (maxFrozenMs !== undefined && !a.frozenTimer) {
        a.frozenTimer = setTimeout(() => void this.frozenTooLong(a, maxFrozenMs).catch(logError), maxFrozenMs);
        a.frozenTimer.unref();
      }
    } else {
      session.frozen.delete(a.row.id);
      if (a.frozenTimer) clearTimeout(a.frozenTimer);
      a.frozenTimer = undefined;
    }
    a.row.state = msg.state;
    await this.writes.update(a.row.id, { state: msg.state });
    this.publishBuild(a.row, a.steps);
    this.publishWorker(session);
  }

  /** A line of the master's own in a build's log; a full disk loses it (said on stderr) rather than fail the caller. */
  private note(buildId: number, data: string): void {
    try {
      this.appendLog(buildId, data);
    } catch (e) {
      logError(`build ${buildId}: cannot write to its log: ${(e as Error).message}`);
    }
  }

  /** Appends to a build's log and streams the text to dashboards. */
  private appendLog(buildId: number, data: string): void {
    this.logs.append(buildId, data);
    if (this.events.size > 0) this.events.publish({ type: 'log', buildId, data });
  }

  /** The build stayed frozen (its volunteer back at the desk) longer than its builder allows: run it elsewhere. */
  private async frozenTooLong(a: ActiveBuild, maxFrozenMs: number): Promise<void> {
    if (this.active.get(a.row.id) !== a) return;
    this.deactivate(a.row.id);
    a.session.frozen.delete(a.row.id);
    a.session.send({ type: 'cancel', buildId: a.row.id, attempt: a.row.attempt, reason: 'frozen for too long; the build runs elsewhere' });
    this.artifacts.abortBuild(a.row.id);
    await this.requeueLost(a.row, `frozen on worker ${a.session.name} for longer than ${Math.round(maxFrozenMs / 1000)}s`);
    this.scheduleDispatch();
  }

  /**
   * The worker broke the build's bounds (a message outside its spec, the master's deadline):
   * the build is stopped there and requeued on another worker, and this one is flagged
   * (GET /api/v1/workers shows the reason).
   */
  private async expel(a: ActiveBuild, why: string): Promise<void> {
    if (this.active.get(a.row.id) !== a) return;
    const { row, session } = a;
    session.send({ type: 'cancel', buildId: row.id, attempt: row.attempt, reason: `${why}; the build runs elsewhere` });
    this.deactivate(row.id);
    if (a.frozenTimer) clearTimeout(a.frozenTimer);
    session.frozen.delete(row.id);
    this.artifacts.abortBuild(row.id);
    let barred = this.barred.get(row.id);
    if (!barred) this.barred.set(row.id, (barred = new Set()));
    barred.add(session.name);
    await this.store.flagWorker({ worker: session.name, buildId: row.id, reason: `build ${row.id}: ${why}`, at: now() }).catch(logError);
    await this.requeueLost(row, `worker ${session.name} ${why}; it was flagged`);
    this.publishWorker(session);
    this.scheduleDispatch();
  }

  /** Uploads without a chunk for `limits.uploadStall` are dropped; their `.partial` files removed. */
  private dropStalledUploads(): void {
    for (const { buildId, name } of this.artifacts.dropStalled(this.caps.uploadStallMs)) {
      this.active.get(buildId)?.usage.uploadStalled(name);
      this.note(buildId, `\n*** artifact ${name} dropped: no data for ${Math.round(this.caps.uploadStallMs / 1000)}s (limits.uploadStall) ***\n`);
    }
  }

  private enqueue(row: BuildRow): void {
    let q = this.queues.get(row.builder);
    if (!q) this.queues.set(row.builder, (q = []));
    let i = q.length;
    while (i > 0 && q[i - 1]!.id > row.id) i--;
    q.splice(i, 0, row);
    this.queued++;
  }

  /** [cloud] Attempts per build lost to the infrastructure (a draining worker, a spot interruption), not counted toward maxAttempts. */
  private readonly infraRetries = new Map<number, number>();

  private async requeueLost(row: BuildRow, why: string, infrastructure = false): Promise<void> {
    const infra = this.infraRetries.get(row.id) ?? 0;
    if (infrastructure && infra < this.options.maxAttempts) {
      this.infraRetries.set(row.id, infra + 1);
      why = `${why}; an infrastructure retry (${infra + 1}), not counted as a failed attempt`;
    } else if (row.attempt - infra >= this.options.maxAttempts) {
      this.note(row.id, `\n*** ${why}; giving up after ${row.attempt} attempts ***\n`);
      await this.finish(row, 'error', `${why}; gave up after ${row.attempt} attempts`, []);
      return;
    }
    const counted = row.attempt - (this.infraRetries.get(row.id) ?? 0);
    this.note(row.id, `\n*** ${why}; build requeued (${infrastructure ? `${counted} failed` : `attempt ${counted}`} of ${this.options.maxAttempts}) ***\n`);
    this.logs.close(row.id);
    this.options.verification?.assigned(row.id, null);
    Object.assign(row, { state: 'queued', worker: null, startedAt: null, message: why });
    await this.store.clearSteps(row.id).catch((e: unknown) => { if (!isDiskFull(e)) throw e; });
    await this.writes.update(row.id, { state: 'queued', worker: null, startedAt: null, message: why });
    this.enqueue(row);
    this.publishBuild(row, []);
  }

  /** The CPU ms counted for what the worker claimed; a claim above the bound is cut down, and the log says so. */
  private boundedCpu(a: ActiveBuild, claimedMs: number): number {
    const wallMs = Date.now() - Date.parse(a.row.startedAt ?? now());
    const cores = grantedCores(this.builders.get(a.row.builder)?.spec.limits.cpus, a.session.capabilities.cpus);
    const claim = boundCpuClaim(claimedMs, wallMs, cores);
    if (claim.cappedAt !== null) this.note(a.row.id, `*** worker ${a.session.name} reported ${claimedMs} ms of CPU time; counted ${claim.cpuMs} ms (wall time × ${cores} cores granted) ***\n`);
    return claim.cpuMs;
  }

  private async finish(row: BuildRow, result: BuildOutcome, message: string | null, steps: StepView[], extra: BuildPatch = {}, cpuMs?: number): Promise<void> {
    Object.assign(row, { state: 'finished', result, message, finishedAt: now(), ...extra });
    await this.writes.update(row.id, { state: 'finished', result, message, finishedAt: row.finishedAt, ...extra });
    this.logs.finish(row.id);
    this.artifacts.abortBuild(row.id);
    this.barred.delete(row.id);
    this.infraRetries.delete(row.id);
    this.publishBuild(row, steps);
    if (row.worker && row.startedAt) void this.options.credit?.buildFinished({ ...row }, cpuMs).catch(logError);
    await this.options.verification?.finished(row);
  }

  scheduleDispatch(): void {
    if (this.dispatchScheduled || this.closed) return;
    this.dispatchScheduled = true;
    queueMicrotask(() => {
      this.dispatchScheduled = false;
      this.dispatch();
    });
  }

  /** Hands queued builds, oldest first, to workers with a free slot that can run them. */
  /** The build no longer runs on a worker (finished, cancelled, lost). */
  private deactivate(id: number): void {
    const a = this.active.get(id);
    if (!a) return;
    this.active.delete(id);
    this.deadlines.stop(id);
    const n = (this.runningPer.get(a.row.builder) ?? 1) - 1;
    if (n > 0) this.runningPer.set(a.row.builder, n);
    else this.runningPer.delete(a.row.builder);
  }

  private dequeue(id: number): BuildRow | null {
    for (const [builder, q] of this.queues) {
      const i = q.findIndex((b) => b.id === id);
      if (i < 0) continue;
      const [row] = q.splice(i, 1);
      if (q.length === 0) this.queues.delete(builder);
      this.queued--;
      return row!;
    }
    return null;
  }

  /**
   * Hands queued builds to workers with a free slot that can run them. Order: the builder
   * with the highest priority first; among equals, the one with the fewest builds running
   * (fair share), then the oldest queued build. Each builder's own builds go oldest first.
   */
  private dispatch(): void {
    // Queued builds wait (the caller re-dispatches when space is back).
    if (this.options.cannotStart?.()) return;
    const unplaced = new Map<string, BuilderDefinition>();
    const blocked = new Set<string>();
    for (;;) {
      let best: { name: string; def: BuilderDefinition; head: BuildRow } | null = null;
      for (const [name, q] of this.queues) {
        if (blocked.has(name)) continue;
        const def = this.builders.get(name);
        if (!def) {
          this.queues.delete(name);
          this.queued -= q.length;
          for (const row of q) void this.finish(row, 'error', `builder "${name}" no longer exists`, []).catch(logError);
          continue;
        }
        const head = q[0]!;
        if (!best || before({ def, head, running: this.runningPer.get(name) ?? 0 }, { def: best.def, head: best.head, running: this.runningPer.get(best.name) ?? 0 })) {
          best = { name, def, head };
        }
      }
      if (!best) break;
      const ver = this.options.verification;
      // `verify.owners: distinct`: no two replicas on workers of the same volunteer.
      const owners = best.def.verify?.owners === 'distinct' ? ver?.excludedOwners(best.head.id) : undefined;
      const pick = this.sessions.size ? pickWorker(best.def, this.sessionOffers(ver?.excluded(best.head.id), this.barred.get(best.head.id), owners,
        best.def.cloud === 'never' || this.options.mayUseCloud?.(best.head, best.def) === false)) : null;
      if (!pick) {
        blocked.add(best.name);
        unplaced.set(best.name, best.def);
        continue;
      }
      this.dequeue(best.head.id);
      this.assign(best.head, best.def, pick.worker, pick.executor);
    }
    if (unplaced.size && this.options.onUnplaced) this.options.onUnplaced([...unplaced.values()]);
  }

  /** Connected workers, but not those in `exclude` (they ran another replica of the build). */
  private *sessionOffers(exclude?: ReadonlySet<string>, barred?: ReadonlySet<string>, owners?: ReadonlySet<string>, noCloud = false): Iterable<WorkerSession> {
    for (const s of this.sessions.values()) {
      if (exclude?.has(s.name) || barred?.has(s.name) || (noCloud && s.cloud)) continue;
      // A worker whose owner is unknown cannot be told apart: it gets no replica of a distinct-owners group.
      if (owners && (s.owner === undefined || owners.has(s.owner))) continue;
      (s as { running: number }).running = s.builds.size;
      yield s;
    }
  }

  private assign(row: BuildRow, builder: BuilderDefinition, session: WorkerSession, executor: ExecutorKind): void {
    const attempt = row.attempt + 1;
    Object.assign(row, { state: 'running', worker: session.name, attempt, startedAt: now(), message: null });
    session.builds.add(row.id);
    (session as { running: number }).running = session.builds.size;
    // [cloud] A one-time credential is good for one build: the session takes nothing after it.
    if (session.buildsLeft !== undefined && --session.buildsLeft <= 0) {
      session.accepting = false;
      session.reason = 'its one-time credential\'s one build is assigned';
    }
    const steps: StepView[] = allStepNames(builder.spec).map((name) => ({ name, state: 'pending', result: null, exitCode: null }));
    this.active.set(row.id, { row, session, steps, usage: new BuildUsage(builder.spec, this.caps) });
    // The master's own clock: the builder's time limit (or limits.defaultTime) plus limits.timeGrace.
    this.deadlines.start(row.id, (builder.spec.limits.timeMs ?? this.caps.defaultTimeMs) + this.caps.timeGraceMs, this.caps.frozenTimeMs);
    this.options.verification?.assigned(row.id, session.name, session.owner);
    // [crowd] Earned trust: a reliable volunteer's replica may make the group's queued ones unneeded (fewer-replicas.ts).
    const fewer = this.options.fewerReplicas?.assigned(row.id, builder, session.owner);
    for (const id of fewer?.drop ?? []) void this.dropReplica(id, fewer!.why).catch(logError);
    this.runningPer.set(row.builder, (this.runningPer.get(row.builder) ?? 0) + 1);
    // The worker hears of attempt N only once the store holds it: a master killed in between
    // requeues the build as attempt N + 1, and never hands out attempt N twice. (SQLite writes
    // at the call; PostgreSQL answers later.) The log header follows the store, for the same
    // reason; a kill between the two leaves attempt N without its header, and the requeue
    // note after the restart names it.
    const a = this.active.get(row.id)!;
    this.store.updateBuild(row.id, { state: 'running', worker: session.name, attempt, startedAt: row.startedAt, message: null }).then(() => {
      // Cancelled, or its worker gone, while the write was on its way: nothing to send.
      if (this.active.get(row.id) !== a || this.closed) return;
      this.note(row.id, `*** attempt ${attempt} on worker ${session.name} (${executor}) at ${row.startedAt} ***\n`);
      const spec = {
        ...builder.spec, executor, revision: row.revision,
        // The worker clones the build's branch (a change's, else the builder's), then checks out the revision.
        source: builder.spec.source && row.branch ? { ...builder.spec.source, branch: row.branch } : builder.spec.source,
      };
      a.sent = spec;
      session.send({ type: 'assign', buildId: row.id, attempt, spec });
      return Promise.all(steps.map((s, index) => this.store.putStep({ buildId: row.id, index, ...s })));
    }, (e: unknown) => this.unassign(a, attempt, e)).catch(logError);
    this.publishBuild(row, steps);
    this.publishWorker(session);
  }

  /** A queued replica that is no longer needed: out of the queue (now, before the dispatcher's next pick), out of its group, finished as cancelled. */
  private async dropReplica(id: number, why: string): Promise<void> {
    const row = this.dequeue(id);
    if (!row) return;
    await this.options.verification?.drop(id, why);
    this.note(id, `*** ${why} ***\n`);
    await this.finish(row, 'cancelled', why, []);
  }

  /** The store refused to record an attempt (full disk, lost database): the build waits in the queue again. */
  private unassign(a: ActiveBuild, attempt: number, e: unknown): void {
    logError(`build ${a.row.id}: cannot store attempt ${attempt}, so it is not sent to ${a.session.name}; it waits in the queue: ${(e as Error).message}`);
    if (this.active.get(a.row.id) !== a) return;
    this.deactivate(a.row.id);
    a.session.builds.delete(a.row.id);
    (a.session as { running: number }).running = a.session.builds.size;
    this.options.verification?.assigned(a.row.id, null);
    Object.assign(a.row, { state: 'queued', worker: null, attempt: attempt - 1, startedAt: null });
    this.enqueue(a.row);
    this.publishBuild(a.row, []);
    this.publishWorker(a.session);
    // Not at once: whatever refused the write is unlikely to be gone the next moment.
    setTimeout(() => this.scheduleDispatch(), 1000).unref();
  }

  private publishBuild(row: BuildRow, steps: StepView[]): void {
    if (this.events.size === 0) return;
    this.events.publish({ type: 'build', build: toBuildView(row, steps) });
  }

  close(): void {
    this.closed = true;
    clearInterval(this.stallSweep);
    this.deadlines.close();
    this.writes.close();
  }
}

export function toBuildView(row: BuildRow, steps: readonly (StepView | StepRow)[], verification?: VerificationView | null): BuildView {
  return {
    ...(verification ? { verification } : {}),
    id: row.id, builder: row.builder, state: row.state, result: row.result, worker: row.worker,
    revision: row.revision, branch: row.branch, reason: row.reason, trigger: row.trigger, rebuildOf: row.rebuildOf,
    supersededBy: row.supersededBy, attempt: row.attempt, message: row.message,
    queuedAt: row.queuedAt, startedAt: row.startedAt, finishedAt: row.finishedAt,
    steps: steps.map((s) => ({ name: s.name, state: s.state, result: s.result, exitCode: s.exitCode })),
  };
}

function logError(e: unknown): void {
  log.error('internal error:', e);
}

/** Whether queued build a goes before b: priority, then fair share, then age. */
function before(a: { def: BuilderDefinition; head: BuildRow; running: number }, b: { def: BuilderDefinition; head: BuildRow; running: number }): boolean {
  if (a.def.priority !== b.def.priority) return a.def.priority > b.def.priority;
  if (a.running !== b.running) return a.running < b.running;
  return a.head.id < b.head.id;
}
