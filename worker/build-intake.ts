import type { KeyObject } from 'node:crypto';
import type { ExecutorKind, Limits } from '../protocol/build-spec.js';
import type { MasterMessage, WorkerMessage } from '../protocol/worker-messages.js';
import { assignmentRefusal, executorFor } from './assignment-check.js';
import type { Executor } from './executors/executor.js';
import { FreezeGate } from './freeze-gate.js';
import type { HistoryStore } from './history-store.js';
import type { LogText } from './log-text.js';
import type { Decision } from './policy.js';
import type { runBuild as RunBuild } from './runner.js';

/** A build running here for a project. */
export interface Running {
  /** Date.now() at start: the slot-seconds it used count for its project's share. */
  started: number;
  historyId: number | null;
  attempt: number;
  builder: string;
  startedAt: string;
  controller: AbortController;
  gate: FreezeGate;
  done: Promise<unknown>;
}

/** What the intake needs of one project's connection (agent.ts's Conn). */
export interface IntakeProject {
  /** The project's name. */
  name: string;
  /** The worker name this project knows the agent by. */
  worker: string;
  /** The master's URL (for the local history; a loopback source is fetched only from a loopback master). */
  url: string;
  project: { key?: KeyObject };
  running: Map<number, Running>;
  /** Slot-milliseconds used by finished builds. */
  usedMs: number;
  /** Never rejects (a lost connection is the link's business). */
  send: (m: WorkerMessage) => Promise<unknown>;
  link: {
    send: (m: WorkerMessage) => Promise<void>;
    sendLog: (buildId: number, attempt: number, text: LogText) => void | Promise<void>;
  };
}

type Assign = Extract<MasterMessage, { type: 'assign' }>;
type Cancel = Extract<MasterMessage, { type: 'cancel' }>;

export interface BuildIntakeOptions {
  executors: ReadonlyMap<ExecutorKind, Executor>;
  /** The volunteer's `--builds`: builds running here at once, over every project. */
  maxBuilds: number;
  workRoot: string;
  agentVersion: string;
  volunteerLimits: () => Limits;
  /** The governor's decision now: a build assigned while frozen starts frozen. */
  decision: () => Decision;
  history: Pick<HistoryStore, 'start' | 'appendLog' | 'finish'>;
  runBuild: typeof RunBuild;
  /** Every build running here, over every project (those left and still stopping too). */
  allRunning: () => [number, Running][];
  /** Whether the agent still serves this project (a held build of a project left never starts). */
  serves: (p: IntakeProject) => boolean;
  /** A build ended, before the next held one starts (the volunteer's "pause after the current build"). */
  ended: () => void;
  /** A build started, or one ended: the agent re-offers its slots (and may finish draining). */
  changed: (why: 'started' | 'finished') => void;
  log: (line: string) => void;
}

/**
 * The assign path, from a master's `assign` to the build's end: the assignment is checked
 * (assignment-check.ts) before anything of it touches the host; it waits for a slot when every
 * one is taken; it starts under the freeze gate's current decision; it is written to the local
 * history (a convenience: a full disk stops neither the build nor the agent); and when it ends,
 * its slot-time counts for its project's share and the next held build starts.
 */
export class BuildIntake {
  /**
   * Assignments that arrived while every slot was taken (a master answering an offer just
   * withdrawn): they start, in order, when one frees. A master can have been offered at most
   * --builds slots, so it has at most that many here; past that its assignments are refused
   * (a hostile master cannot fill the volunteer's memory with specs that wait).
   */
  private held: { project: IntakeProject; msg: Assign }[] = [];

  constructor(private readonly o: BuildIntakeOptions) {}

  /** Builds assigned but waiting for a slot. */
  get heldCount(): number { return this.held.length; }

  assign(c: IntakeProject, msg: Assign, fromHeld = false): void {
    const { o } = this;
    const refusal = assignmentRefusal(msg.spec, { executors: o.executors, running: c.running.has(msg.buildId), volunteerLimits: o.volunteerLimits() });
    if (refusal) return this.refuse(c, msg, refusal.message, refusal.volunteer);
    if (o.allRunning().length >= o.maxBuilds || (this.held.length > 0 && !fromHeld)) {
      // The same build assigned again (a newer attempt): it takes the older one's place.
      const before = this.held.length;
      this.held = this.held.filter((h) => h.project !== c || h.msg.buildId !== msg.buildId);
      if (this.held.length === before && this.held.filter((h) => h.project === c).length >= o.maxBuilds) {
        return this.refuse(c, msg, `${o.maxBuilds} of this project's assignments already wait for a slot here (at most --builds ${o.maxBuilds})`, true);
      }
      // Every slot is taken: it waits for one, so the builds running here never exceed the volunteer's --builds.
      o.log(`build ${msg.buildId} (${msg.spec.builder}) for ${c.name} waits for a free slot`);
      this.held.push({ project: c, msg });
      return;
    }
    this.start(c, msg);
  }

  /** Cancels the attempt the master names, running or waiting for a slot; another attempt of that build is left alone. */
  cancel(c: IntakeProject, msg: Cancel): void {
    const r = c.running.get(msg.buildId);
    if (r && r.attempt === msg.attempt) {
      this.o.log(`build ${msg.buildId} cancelled: ${msg.reason}`);
      r.controller.abort();
    }
    this.held = this.held.filter((h) => h.project !== c || h.msg.buildId !== msg.buildId || h.msg.attempt !== msg.attempt);
  }

  /** Starts held builds while slots are free; those of a project the agent no longer serves are dropped. */
  startHeld(): void {
    while (this.held.length && this.o.allRunning().length < this.o.maxBuilds) {
      const h = this.held.shift()!;
      if (this.o.serves(h.project)) this.assign(h.project, h.msg, true);
    }
  }

  /** Gives up the held builds of `project`, or every held build (draining, closing): none of them starts. */
  dropHeld(project?: IntakeProject): void {
    this.held = project ? this.held.filter((h) => h.project !== project) : [];
  }

  /** Answers an assignment this worker will not run: finished/error, before any of it touches the host. */
  private refuse(c: IntakeProject, msg: Assign, message: string, volunteer: boolean): void {
    if (volunteer) this.o.log(`refused build ${msg.buildId} (${msg.spec.builder}): ${message}`);
    void c.send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'finished', result: 'error',
      message: volunteer ? `refused by worker ${c.worker}: ${message}` : message });
  }

  private start(c: IntakeProject, msg: Assign): void {
    const controller = new AbortController();
    const { o } = this;
    const executor = o.executors.get(executorFor(msg.spec))!;
    const gate = new FreezeGate();
    const d = o.decision();
    if (d.freeze) void gate.freeze();
    else if (d.cpuCap !== null) void gate.limitCpu(d.cpuCap);
    const localId = this.historySafe(() => o.history.start({ buildId: msg.buildId, attempt: msg.attempt, master: c.url, builder: msg.spec.builder, revision: msg.spec.revision, spec: msg.spec }), null);
    let localLogOk = localId !== null;
    o.log(`build ${msg.buildId} (${msg.spec.builder}) attempt ${msg.attempt} started`);
    const done = o.runBuild({
      buildId: msg.buildId, attempt: msg.attempt, spec: msg.spec, executor, workRoot: o.workRoot, volunteerLimits: o.volunteerLimits(), masterUrl: c.url,
      send: (m) => c.link.send(m), sendLog: (text) => c.link.sendLog(msg.buildId, msg.attempt, text), signal: controller.signal, gate,
      ...(c.project.key ? { provenance: { worker: c.worker, key: c.project.key, agentVersion: o.agentVersion } } : {}),
      localLog: (data) => { if (localLogOk && localId !== null) localLogOk = this.historySafe(() => { o.history.appendLog(localId, data); return true; }, false); },
    }).then((result) => {
      if (localId !== null) this.historySafe(() => o.history.finish(localId, result, null, gate.frozenMs, gate.cpuMs), undefined);
      o.log(`build ${msg.buildId} ${result}`);
    }).catch((e: Error) => {
      if (localId !== null) this.historySafe(() => o.history.finish(localId, 'error', e.message, gate.frozenMs, gate.cpuMs), undefined);
      o.log(`build ${msg.buildId} failed: ${e.message}`);
    }).finally(() => {
      const r = c.running.get(msg.buildId);
      if (r) c.usedMs += Date.now() - r.started;
      c.running.delete(msg.buildId);
      o.ended();
      this.startHeld();
      o.changed('finished');
    });
    c.running.set(msg.buildId, { historyId: localId, attempt: msg.attempt, builder: msg.spec.builder, startedAt: new Date().toISOString(), started: Date.now(), controller, gate, done });
    o.changed('started');
    if (gate.frozen) void c.send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'frozen', result: null, message: d.reason });
  }

  /** The local history is a convenience: a full disk must not stop a build (or the agent). */
  private historySafe<T>(what: () => T, otherwise: T): T {
    try { return what(); } catch (e) { this.o.log(`local history not written: ${(e as Error).message}`); return otherwise; }
  }
}
