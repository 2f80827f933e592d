import { rmSync } from 'node:fs';
import type { BuildOutcome, BuildTrigger, StepView } from '../protocol/api.js';
import type { BuilderDefinition } from '../protocol/builder-file.js';
import { allStepNames, type ExecutorKind } from '../protocol/build-spec.js';
import type { WorkerMessage } from '../protocol/worker-messages.js';
import type { LogBytesMessage, LogMessage } from '../protocol/log-frame.js';
import { assertNever } from '../protocol/assert-never.js';
import type { ArtifactStore } from './artifact-store.js';
import type { EventBus } from './events.js';
import type { BuildLogs, WorkerLogRange } from './log-store.js';
import { workerView } from './views.js';
import { pickWorker } from './matching.js';
import type { BuildPatch, BuildRow, Store } from './store/store.js';
import type { Verification } from './verification.js';
import { BuildWrites, isDiskFull } from './disk-space.js';
import { BuildUsage, DEFAULT_BUILD_CAPS, type BuildCaps } from './worker-bounds.js';
import { BuildDeadlines } from './build-deadlines.js';
import { log } from './log.js';
import { BuildQueue } from './coordinator/build-queue.js';
import { ActiveBuilds, type ActiveBuild } from './coordinator/active-builds.js';
import { WorkerSessions, type WorkerSession } from './coordinator/worker-sessions.js';
import { first, type Candidate } from './coordinator/dispatch-order.js';
import { toBuildView } from './coordinator/build-view.js';
import { syncQueue } from './coordinator/queue-sync.js';
import { fencedRecord, inProcessRecord, type AttemptRecord } from './coordinator/attempt-record.js';
import type { ClaimStore } from './store/claims.js';
import { DEFAULT_LEASE_MS } from '../protocol/farm.js';

export type { WorkerSession } from './coordinator/worker-sessions.js';
export { toBuildView } from './coordinator/build-view.js';
import type { AttemptFinish } from './provenance/attestations.js';
import { boundCpuClaim, grantedCores } from './cpu-claim.js';
import type { FewerReplicas } from './fewer-replicas.js';

/**
 * A worker's message as the hub hands it over: the text of a log frame may be the frame's UTF-8
 * bytes (checked by the hub), which a log file takes as they are, without decoding them.
 */
export type InboundMessage = Exclude<WorkerMessage, { type: 'hello' | 'log' }> | LogMessage | LogBytesMessage;

const utf8 = new TextDecoder();
const textOf = (data: string | Uint8Array): string => (typeof data === 'string' ? data : utf8.decode(data));

/** The builders the coordinator can see (the registry of builder files). */
export interface BuilderLookup {
  get(name: string): BuilderDefinition | null;
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
  private readonly queue = new BuildQueue();
  private readonly active = new ActiveBuilds();
  private readonly sessions = new WorkerSessions();
  private dispatchScheduled = false;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly builders: BuilderLookup,
    private readonly logs: BuildLogs,
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
      /** Several masters on the store: how long a lost worker's attempts wait to be adopted (default DEFAULT_LEASE_MS). */
      adoptWindowMs?: number;
      /** [crowd] Drops replicas a reliable volunteer's result makes unneeded (master/fewer-replicas.ts). */
      fewerReplicas?: FewerReplicas;
    },
  ) {
    this.writes = new BuildWrites(store, logError);
    this.claims = store.claims;
    this.record = this.claims ? fencedRecord(this.claims) : inProcessRecord(store, this.writes);
    this.adoptWindowMs = options.adoptWindowMs ?? DEFAULT_LEASE_MS;
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
  /** Several masters on one store (PostgreSQL): claims, fences, adoption (master/store/claims.ts); undefined on SQLite. */
  private readonly claims: ClaimStore | undefined;
  /** Every write about a build: plain (one master) or fenced by attempt and holder (several). */
  private readonly record: AttemptRecord;
  private readonly adoptWindowMs: number;
  /** Attempts this master took over from a worker that reconnected (several masters). */
  adoptedCount = 0;

  /** Whether this master shares its store with others (and offers workers adoption). */
  get shared(): boolean {
    return this.claims !== undefined;
  }

  /** Whether build logs go to a store that acknowledges them (FEATURE_LOG_ACK: the shared PostgreSQL). */
  get acksLogs(): boolean {
    return this.logs.storedOffset !== undefined;
  }

  /** How long a worker should keep its builds running without a master, waiting to be adopted. */
  get adoptionWindowMs(): number {
    return this.adoptWindowMs;
  }

  /**
   * Loads unfinished builds after a (re)start: queued ones keep their place; running ones lost
   * their worker. With several masters only the queue is read: a running build belongs to the
   * master holding it, and comes back to the queue through the store's reaping once its
   * holder's lease has run out (master/store/claims.ts).
   */
  async recover(): Promise<void> {
    if (this.claims) {
      await this.refreshQueue();
      return;
    }
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
    // The other masters hear of what this one could not place at once (NOTIFY wakes them;
    // they read the queue from the table). After the dispatch (the microtask queued above runs
    // first): a build this master claims is no news to them, and a wake-up sent ahead of the
    // claim was one more round trip before it on the store's ordered connection.
    const claims = this.claims;
    if (claims) queueMicrotask(() => { if (rows.some((r) => this.queue.has(r.id))) void claims.wake().catch(logError); });
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
    const older = this.queue.of(newer.builder)
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
      if (!await this.finish(queued, 'cancelled', 'cancelled while queued', [])) throw new ConflictError(`build ${id} was started by another master meanwhile`);
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
    if (row.state !== 'finished' && this.claims) throw new ConflictError(`build ${id} runs on a worker of another master; cancel it there`);
    throw new ConflictError(`build ${id} has already finished`);
  }

  addSession(session: WorkerSession): void {
    this.sessions.add(session);
    this.options.onSessionsChanged?.();
    this.scheduleDispatch();
  }

  /** Tells dashboards a worker's state changed (busy, idle, frozen). */
  private publishWorker(session: WorkerSession): void {
    if (this.events.size === 0 || !this.sessions.isCurrent(session)) return;
    this.events.publish({ type: 'worker', worker: workerView(session.name, session.capabilities, session) });
  }

  /**
   * The worker's connection is gone: its builds go back to the queue (or fail after too many
   * attempts). With several masters they are released instead: the worker may be reconnecting
   * to another master, which adopts them; the store requeues them if it does not come back
   * within the adoption window.
   */
  async removeSession(session: WorkerSession): Promise<void> {
    this.sessions.remove(session);
    const released: { id: number; attempt: number }[] = [];
    for (const id of session.builds) {
      const a = this.active.get(id);
      if (!a || a.session !== session) continue;
      this.deactivate(id);
      if (a.frozenTimer) clearTimeout(a.frozenTimer);
      this.artifacts.abortBuild(id);
      if (this.claims) {
        released.push({ id, attempt: a.row.attempt });
        this.note(id, `\n*** worker ${session.name} disconnected; its attempt ${a.row.attempt} waits ${Math.round(this.adoptWindowMs / 1000)}s for it to reconnect to any master ***\n`);
        this.logs.close(id);
        continue;
      }
      await this.requeueLost(a.row, `worker ${session.name} disconnected`);
    }
    if (released.length) await this.claims!.release(released, this.adoptWindowMs);
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
    return this.queue.size;
  }

  /** [cloud] The queued builds, per builder oldest first (the cloud pool sizes itself on them). */
  *queuedBuilds(): Iterable<BuildRow> {
    for (const [, q] of this.queue.builders()) yield* q;
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
  async handle(session: WorkerSession, msg: InboundMessage): Promise<void> {
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
    const a = this.active.current(msg.buildId, session, msg.attempt);
    if (!a) {
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

  private async apply(session: WorkerSession, a: ActiveBuild, msg: Exclude<InboundMessage, { type: 'availability' | 'drain' }>): Promise<void> {
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
        return this.onLog(a, msg);
      case 'revision':
        // A build asked for without a revision (a branch's head) becomes that exact commit, so
        // a later attempt or a rebuild builds the same one. A revision that was asked for stays.
        if (a.row.revision !== null) return;
        a.row.revision = msg.revision;
        if (!await this.record.update(a.row, { revision: msg.revision })) return this.letGo(a);
        this.publishBuild(a.row, a.steps);
        return;
      case 'step': {
        // msg.index < the spec's step count (checked above); the name is the spec's, not the worker's.
        const view: StepView = { name: a.steps[msg.index]?.name ?? msg.name, state: msg.state, result: msg.result, exitCode: msg.exitCode };
        a.steps[msg.index] = view;
        if (!await this.record.step(a.row, { buildId: msg.buildId, index: msg.index, ...view })) return this.letGo(a);
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
          // With a bucket (artifacts.s3) the artifact is the farm's before it is listed; a failed
          // put refuses it, naming the bucket, and leaves the verified file on this disk.
          try {
            await this.artifacts.publish(msg.buildId, msg.name, msg.size, msg.sha256);
          } catch (e) {
            this.appendLog(msg.buildId, `\n*** artifact ${msg.name} refused: ${(e as Error).message} ***\n`);
            return;
          }
          if (this.active.get(a.row.id) !== a) return;
          if (!await this.record.artifact(a.row, { buildId: msg.buildId, name: msg.name, size: msg.size, sha256: msg.sha256, worker: session.name, attempt: msg.attempt })) return this.letGo(a);
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
      // A shared log store takes the attempt's text only while it runs (fenced): it is stored before the end is.
      await this.logs.flush?.();
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
    if (!await this.record.update(a.row, { state: msg.state })) return this.letGo(a);
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

  /**
   * A worker's log text. With offsets (FEATURE_LOG_ACK, several masters) the text is placed
   * by where the worker says it starts in the attempt's log: what this master already has
   * (text sent again after a fail-over) is dropped, so an adopted attempt's log has every
   * character once. Trust: the offset only decides which of this worker's own characters of
   * its own attempt are kept; a gap (text the worker never sent) is written as a note.
   */
  private onLog(a: ActiveBuild, msg: LogMessage | LogBytesMessage): void {
    if (msg.offset === undefined || a.logOffset === undefined) return this.appendLog(msg.buildId, msg.data);
    // Offsets count UTF-16 code units: this path works on the text.
    let data = textOf(msg.data);
    let { offset } = msg;
    const end = offset + data.length;
    if (end <= a.logOffset) return;
    if (offset < a.logOffset) {
      data = data.slice(a.logOffset - offset);
      offset = a.logOffset;
    } else if (offset > a.logOffset && !a.logGapNoted) {
      // Once an attempt: a worker sending gaps on purpose gets no note per frame (notes are not under its log cap).
      a.logGapNoted = true;
      this.note(a.row.id, `\n*** ${offset - a.logOffset} characters of this log never reached the masters (later gaps of this attempt are not noted) ***\n`);
    }
    a.logOffset = end;
    this.appendLog(msg.buildId, data, { attempt: a.row.attempt, from: offset, length: data.length });
  }

  /** The shared log store holds each attempt's log up to `offset`: its worker may forget that much (logAck). */
  logStored(stored: readonly { buildId: number; attempt: number; offset: number }[]): void {
    for (const { buildId, attempt, offset } of stored) {
      const a = this.active.get(buildId);
      if (a && a.row.attempt === attempt && a.logOffset !== undefined) a.session.send({ type: 'logAck', buildId, attempt, offset });
    }
  }

  /** Appends to a build's log and streams the text to dashboards. */
  private appendLog(buildId: number, data: string | Uint8Array, range?: WorkerLogRange): void {
    this.logs.append(buildId, typeof data === 'string' || Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), range);
    if (this.events.size > 0) this.events.publish({ type: 'log', buildId, data: textOf(data) });
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
    this.queue.enqueue(row);
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
    // Fenced (several masters): a build this master no longer holds is not requeued by it.
    if (!await this.record.requeue(row, { state: 'queued', worker: null, startedAt: null, message: why })) return;
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

  /** Ends a build (queued or running); false when, with several masters, this one no longer held it (nothing was changed). */
  private async finish(row: BuildRow, result: BuildOutcome, message: string | null, steps: StepView[], extra: BuildPatch = {}, cpuMs?: number): Promise<boolean> {
    const queued = row.state === 'queued';
    Object.assign(row, { state: 'finished', result, message, finishedAt: now(), ...extra });
    if (!await this.record.update(row, { state: 'finished', result, message, finishedAt: row.finishedAt, ...extra }, queued)) {
      log.warn(`build ${row.id} attempt ${row.attempt}: not ended here as ${result}: this master no longer holds it`);
      this.logs.close(row.id);
      return false;
    }
    this.logs.finish(row.id);
    this.artifacts.abortBuild(row.id);
    this.barred.delete(row.id);
    this.infraRetries.delete(row.id);
    this.publishBuild(row, steps);
    if (row.worker && row.startedAt) void this.options.credit?.buildFinished({ ...row }, cpuMs).catch(logError);
    await this.options.verification?.finished(row);
    return true;
  }

  scheduleDispatch(): void {
    if (this.dispatchScheduled || this.closed) return;
    this.dispatchScheduled = true;
    queueMicrotask(() => {
      this.dispatchScheduled = false;
      this.dispatch();
    });
  }

  /** The build no longer runs on a worker (finished, cancelled, lost). */
  private deactivate(id: number): void {
    if (this.active.remove(id)) this.deadlines.stop(id);
  }

  private dequeue(id: number): BuildRow | null {
    return this.queue.dequeue(id);
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
      const best = first(this.candidates(blocked));
      if (!best) break;
      const ver = this.options.verification;
      // `verify.owners: distinct`: no two replicas on workers of the same volunteer.
      const owners = best.def.verify?.owners === 'distinct' ? ver?.excludedOwners(best.head.id) : undefined;
      const pick = this.sessions.size ? pickWorker(best.def, this.sessions.offers(ver?.excluded(best.head.id), this.barred.get(best.head.id), owners,
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

  /** The head of each builder's queue not in `blocked`; a builder that no longer exists has its builds ended. */
  private *candidates(blocked: ReadonlySet<string>): Iterable<Candidate> {
    for (const [name, q] of [...this.queue.builders()]) {
      if (blocked.has(name)) continue;
      const def = this.builders.get(name);
      if (!def) {
        for (const row of this.queue.dropBuilder(name)) void this.finish(row, 'error', `builder "${name}" no longer exists`, []).catch(logError);
        continue;
      }
      yield { name, def, head: q[0]!, running: this.active.runningOf(name) };
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
    this.active.add({ row, session, steps, usage: new BuildUsage(builder.spec, this.caps), ...(this.logs.storedOffset ? { logOffset: 0 } : {}) });
    // The master's own clock: the builder's time limit (or limits.defaultTime) plus limits.timeGrace.
    this.deadlines.start(row.id, (builder.spec.limits.timeMs ?? this.caps.defaultTimeMs) + this.caps.timeGraceMs, this.caps.frozenTimeMs);
    this.options.verification?.assigned(row.id, session.name, session.owner);
    // [crowd] Earned trust: a reliable volunteer's replica may make the group's queued ones unneeded (fewer-replicas.ts).
    const fewer = this.options.fewerReplicas?.assigned(row.id, builder, session.owner);
    for (const id of fewer?.drop ?? []) void this.dropReplica(id, fewer!.why).catch(logError);
    // The worker hears of attempt N only once the store holds it: a master killed in between
    // requeues the build as attempt N + 1, and never hands out attempt N twice. (SQLite writes
    // at the call; PostgreSQL answers later.) The log header follows the store, for the same
    // reason; a kill between the two leaves attempt N without its header, and the requeue
    // note after the restart names it.
    const a = this.active.get(row.id)!;
    // With several masters this write is the claim (master/store/claims.ts): if another
    // master took the build first, it is simply not ours, and nothing is sent.
    this.record.start(row, attempt, session.name, row.startedAt!).then(async (ok): Promise<unknown> => {
      if (!ok) { this.taken(a); return undefined; }
      // Cancelled, or its worker gone, while the write was on its way: nothing to send.
      if (this.active.get(row.id) !== a || this.closed) return undefined;
      this.note(row.id, `*** attempt ${attempt} on worker ${session.name} (${executor}) at ${row.startedAt} ***\n`);
      // A shared log store: the header is stored before the worker hears (an adopted attempt's log has it).
      if (this.logs.flush) {
        await this.logs.flush();
        if (this.active.get(row.id) !== a || this.closed) return undefined;
      }
      const spec = {
        ...builder.spec, executor, revision: row.revision,
        // The worker clones the build's branch (a change's, else the builder's), then checks out the revision.
        source: builder.spec.source && row.branch ? { ...builder.spec.source, branch: row.branch } : builder.spec.source,
      };
      a.sent = spec;
      session.send({ type: 'assign', buildId: row.id, attempt, spec });
      return Promise.all(steps.map((s, index) => this.record.step(row, { buildId: row.id, index, ...s })));
    }, (e: unknown) => this.unassign(a, attempt, e)).catch(logError);
    this.publishBuild(row, steps);
    this.publishWorker(session);
  }

  /** Another master claimed the build first (several masters): it is not ours; the slot is free again. */
  private taken(a: ActiveBuild): void {
    if (this.active.get(a.row.id) !== a) return;
    this.deactivate(a.row.id);
    a.session.builds.delete(a.row.id);
    (a.session as { running: number }).running = a.session.builds.size;
    this.options.verification?.assigned(a.row.id, null);
    this.publishWorker(a.session);
    this.scheduleDispatch();
  }

  /**
   * A fenced write about a running attempt did not land (several masters): this master no
   * longer holds it — another adopted it, or this one's lease ran out and the store requeued
   * it. It is let go without another write; its worker, if still connected here, is told to
   * stop that attempt (a requeued build runs elsewhere; an adopted one is not on this socket).
   */
  private letGo(a: ActiveBuild, why = 'this master no longer holds it'): void {
    if (this.active.get(a.row.id) !== a) return;
    const { row, session } = a;
    this.deactivate(row.id);
    if (a.frozenTimer) clearTimeout(a.frozenTimer);
    session.builds.delete(row.id);
    session.frozen.delete(row.id);
    this.artifacts.abortBuild(row.id);
    this.logs.close(row.id);
    log.warn(`build ${row.id} attempt ${row.attempt}: ${why}; letting it go`);
    session.send({ type: 'cancel', buildId: row.id, attempt: row.attempt, reason: `the master ${why}` });
    this.publishWorker(session);
    this.scheduleDispatch();
  }

  /**
   * A worker that (re)connected says which attempts it is still running. Trust: that list is
   * only the worker's word; each attempt is taken over only if the store says it is this
   * worker's (the name its token authenticated) current attempt and still running — one
   * fenced statement (ClaimStore.adopt). Every other one is cancelled on the worker, so
   * nothing runs twice. A single master (SQLite) adopts nothing: its builds were requeued when
   * the worker left.
   */
  async adopt(session: WorkerSession, running: readonly { buildId: number; attempt: number }[]): Promise<void> {
    for (const { buildId, attempt } of running) {
      const mine = this.active.get(buildId);
      if (mine && mine.session === session && mine.row.attempt === attempt) continue;
      const row = this.claims ? await this.claims.adopt(buildId, attempt, session.name) : null;
      const def = row ? this.builders.get(row.builder) : null;
      if (!row || !def) {
        session.send({ type: 'cancel', buildId, attempt, reason: row ? `builder "${row.builder}" no longer exists on this master` : 'this attempt is not current any more (the build was requeued, cancelled or finished)' });
        if (row) await this.requeueLost(row, `its builder is unknown to master ${this.claims!.holder}`);
        continue;
      }
      if (mine) this.deactivate(buildId);
      this.dequeue(buildId);
      const stored = await this.store.listSteps([buildId]);
      const steps: StepView[] = allStepNames(def.spec).map((name, index) => {
        const s = stored.find((x) => x.index === index);
        return s ? { name: s.name, state: s.state, result: s.result, exitCode: s.exitCode } : { name, state: 'pending', result: null, exitCode: null };
      });
      session.builds.add(buildId);
      (session as { running: number }).running = session.builds.size;
      if (row.state === 'frozen') session.frozen.add(buildId);
      // The caps start again from zero for the rest of the attempt (what it sent the old master is not known here).
      // The log goes on where the farm's store has it; the worker sends again what it kept beyond that.
      const logOffset = this.logs.storedOffset ? await this.logs.storedOffset(buildId, attempt) : undefined;
      this.active.add({ row, session, steps, usage: new BuildUsage(def.spec, this.caps), ...(logOffset !== undefined ? { logOffset } : {}) });
      this.deadlines.start(buildId, (def.spec.limits.timeMs ?? this.caps.defaultTimeMs) + this.caps.timeGraceMs, this.caps.frozenTimeMs);
      if (row.state === 'frozen') this.deadlines.setFrozen(buildId, true);
      this.options.verification?.assigned(buildId, session.name, session.owner);
      this.adoptedCount++;
      this.note(buildId, `\n*** attempt ${attempt} adopted by master ${this.claims!.holder}: worker ${session.name} reconnected and carries on ***\n`);
      this.publishBuild(row, steps);
    }
    this.publishWorker(session);
  }

  /**
   * Several masters: reads the queued rows and brings this master's queue in line (called at
   * start, on a NOTIFY, after reaping, and every few seconds: NOTIFY only wakes, the table is
   * the record). Calls that arrive while one runs are folded into one more pass.
   */
  refreshQueue(): Promise<void> {
    const claims = this.claims;
    if (!claims) return Promise.resolve();
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        const rows = await claims.listQueued();
        syncQueue(this.queue, rows, (id) => this.active.get(id) !== undefined);
      } while (this.refreshAgain && !this.closed);
    })().finally(() => {
      this.refreshing = null;
      this.scheduleDispatch();
    });
    return this.refreshing;
  }

  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;

  /** Several masters: puts back in the queue the attempts nobody holds any more (any master may run it; the store makes it idempotent). */
  async reap(): Promise<number> {
    if (!this.claims) return 0;
    const reaped = await this.claims.reap(this.options.maxAttempts, now());
    const why = 'the master holding it was lost (killed, restarted or past its lease) while it ran, and its worker did not come back';
    for (const b of reaped) {
      this.note(b.id, b.state === 'queued'
        ? `\n*** ${why}; build requeued (attempt ${b.attempt} of ${this.options.maxAttempts}) ***\n`
        : `\n*** ${why}; giving up after ${b.attempt} attempts ***\n`);
      this.logs.close(b.id);
    }
    if (reaped.length > 0) await this.refreshQueue();
    return reaped.length;
  }

  /**
   * This master lost its lease (it was paused or cut off from the store for longer than the
   * lease): it holds nothing any more. Its running attempts are forgotten without a write,
   * its workers' connections are closed (they reconnect and, if their attempts are still
   * current, are adopted — by this master under its new id, or by another), and its view of
   * the queue is dropped, to be read again.
   */
  stepDown(): void {
    for (const a of [...this.active.values()]) {
      this.deactivate(a.row.id);
      if (a.frozenTimer) clearTimeout(a.frozenTimer);
      a.session.builds.delete(a.row.id);
      a.session.frozen.delete(a.row.id);
      this.artifacts.abortBuild(a.row.id);
      this.logs.close(a.row.id);
    }
    for (const s of [...this.sessions.values()]) s.close('this master lost its lease; connect again', true);
    for (const [name] of [...this.queue.builders()]) this.queue.dropBuilder(name);
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

function logError(e: unknown): void {
  log.error('internal error:', e);
}
