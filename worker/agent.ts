import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BuildSpecSchema, type BuildSpec, type ExecutorKind, type Limits } from '../protocol/build-spec.js';
import type { AgentStatus, HistoryEntry, Preferences } from '../protocol/control-api.js';
import type { MasterMessage } from '../protocol/worker-messages.js';
import { assertNever } from '../protocol/assert-never.js';
import { formatSize } from '../protocol/units.js';
import { readCapabilities } from './capabilities.js';
import { startControlServer } from './control-server.js';
import { detectExecutors } from './executors/detect.js';
import { releaseStaleDiskLimits } from './executors/disk-limit.js';
import type { Executor } from './executors/executor.js';
import { FreezeGate } from './freeze-gate.js';
import { Governor } from './governor.js';
import { HistoryStore } from './history-store.js';
import { detectIdleSource, type IdleSourceChoice } from './idle/detect-idle.js';
import { ReportedIdleSource } from './idle/idle-source.js';
import { MasterLink, workerEndpoint } from './master-link.js';
import type { Decision } from './policy.js';
import { PreferencesStore } from './preferences-store.js';
import { runBuild } from './runner.js';

export interface WorkerOptions {
  master: string;
  token: string;
  /** Defaults to the name inside the token. */
  name?: string;
  dataDir: string;
  executor: 'auto' | ExecutorKind;
  labels: string[];
  maxBuilds?: number;
  /** Preferences given on the command line; they override (and update) the persisted ones. */
  preferences?: Partial<Preferences>;
  idleSource?: IdleSourceChoice;
  /** Port of the local control API on 127.0.0.1 (default: any free port; see DATA/control.json). */
  controlPort?: number;
  /** `sha256:HEX` fingerprint of the master's TLS certificate (from `crowdbake token create`); kept in DATA/master-pin for later starts. */
  pin?: string;
  agentVersion?: string;
  backoff?: { minMs: number; maxMs: number };
  log?: (line: string) => void;
}

export interface WorkerHandle {
  name: string;
  executors: ExecutorKind[];
  link: MasterLink;
  controlUrl: string;
  status(): AgentStatus;
  /** Build ids running now. */
  running(): number[];
  /** Resolves when the worker stops for good (closed, or refused by the master). */
  done: Promise<void>;
  close(): Promise<void>;
}

interface Running {
  historyId: number | null;
  attempt: number;
  builder: string;
  startedAt: string;
  controller: AbortController;
  gate: FreezeGate;
  done: Promise<unknown>;
}

/**
 * Starts the volunteer agent: picks executors, cleans up leftovers, applies the volunteer's
 * preferences (idle, schedule, battery, pause), serves the local control API, connects to the
 * master and runs — or freezes — what it is assigned.
 */
export async function startWorker(opts: WorkerOptions): Promise<WorkerHandle> {
  const log = opts.log ?? ((l: string) => console.log(`crowdbake worker: ${l}`));
  const tokenName = /^cbw1\.([^.]+)\./.exec(opts.token)?.[1];
  const name = opts.name ?? tokenName;
  if (!name) throw new Error('--token does not look like a worker token (cbw1.NAME.SECRET); pass the token `crowdbake token create` printed');
  const dataDir = resolve(opts.dataDir);
  const workRoot = join(dataDir, 'work');
  // Workdirs left by an earlier run that crashed belong to builds the master has requeued;
  // those with a disk limit are mounted filesystems, unmounted first.
  await releaseStaleDiskLimits(workRoot);
  rmSync(workRoot, { recursive: true, force: true });
  mkdirSync(workRoot, { recursive: true });
  const url = workerEndpoint(opts.master);

  const prefs = new PreferencesStore(dataDir);
  if (prefs.problem) log(prefs.problem);
  if (opts.preferences && Object.keys(opts.preferences).length) prefs.update(opts.preferences);

  const detected = await detectExecutors(`w-${name}`.toLowerCase().replace(/[^a-z0-9-]/g, '-'), opts.executor, { dataDir });
  for (const [kind, why] of Object.entries(detected.unavailable)) log(`executor ${kind} unavailable: ${why}`);
  if (detected.executors.length === 0) {
    throw new Error(`no executor available (${Object.entries(detected.unavailable).map(([k, v]) => `${k}: ${v}`).join('; ')})`);
  }
  const executors = new Map<ExecutorKind, Executor>(detected.executors.map((e) => [e.kind, e]));
  for (const e of executors.values()) {
    const n = await e.cleanupStale();
    if (n > 0) log(`removed ${n} leftover ${e.kind} sandbox(es) from an earlier run`);
  }

  const idle = await detectIdleSource(opts.idleSource ?? 'auto');
  log(`idle source: ${idle.name} (${idle.why})`);
  const history = new HistoryStore(dataDir);
  /** The local history is a convenience: a full disk must not stop a build (or the agent). */
  const historySafe = <T>(what: () => T, otherwise: T): T => {
    try { return what(); } catch (e) { log(`local history not written: ${(e as Error).message}`); return otherwise; }
  };
  const running = new Map<number, Running>();
  const governor = new Governor(idle, () => prefs.get(), () => running.size > 0);

  const volunteerLimits = (): Limits => {
    const p = prefs.get();
    return {
      ...(p.cpus !== null ? { cpus: p.cpus } : {}),
      ...(p.memoryBytes !== null ? { memoryBytes: p.memoryBytes } : {}),
      ...(p.diskBytes !== null ? { diskBytes: p.diskBytes } : {}),
    };
  };
  const pin = rememberPin(dataDir, url, opts.pin);
  if (pin) log(`the master's certificate is pinned: ${pin}`);
  const link = new MasterLink({
    url, name, token: opts.token, ...(pin ? { pin } : {}), agentVersion: opts.agentVersion ?? '0.1.0',
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    availability: () => ({ accepting: governor.current.run, reason: governor.current.reason }),
    capabilities: () => {
      const l = volunteerLimits();
      return readCapabilities(dataDir, [...executors.keys()], {
        ...(l.cpus !== undefined ? { cpus: l.cpus } : {}),
        ...(l.memoryBytes !== undefined ? { memoryBytes: l.memoryBytes } : {}),
        ...(l.diskBytes !== undefined ? { diskBytes: l.diskBytes } : {}),
        labels: opts.labels, maxBuilds: opts.maxBuilds ?? 1,
      });
    },
  });
  const send = (m: Parameters<MasterLink['send']>[0]) => link.send(m).catch(() => undefined);

  /** Freeze or thaw every build, then tell the master (it shows `frozen` and stops assigning). */
  const applyDecision = async (d: Decision) => {
    const started = Date.now();
    const builds = [...running.entries()];
    if (d.run) await Promise.all(builds.map(([, r]) => r.gate.thaw()));
    else await Promise.all(builds.map(([, r]) => r.gate.freeze()));
    for (const [buildId, r] of builds) {
      void send({ type: 'state', buildId, attempt: r.attempt, state: d.run ? 'running' : 'frozen', result: null, message: d.reason });
    }
    void send({ type: 'availability', accepting: d.run, reason: d.reason });
    log(`${d.run ? 'builds may run' : 'builds held'}: ${d.reason}${builds.length ? ` (${builds.length} build(s) ${d.run ? 'thawed' : 'frozen'} in ${Date.now() - started} ms)` : ''}`);
  };
  let applying: Promise<void> = Promise.resolve();
  governor.on('change', (d) => { applying = applying.then(() => applyDecision(d)).catch((e: Error) => log(`freeze/thaw failed: ${e.message}`)); });

  const onMessage = (msg: MasterMessage) => {
    switch (msg.type) {
      case 'assign': {
        const executor = executors.get(msg.spec.executor === 'any' ? 'container' : msg.spec.executor);
        if (!executor || running.has(msg.buildId)) {
          void send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'finished', result: 'error',
            message: executor ? 'build already running here' : `this worker has no ${msg.spec.executor} executor` });
          return;
        }
        const tooBig = exceedsVolunteer(msg.spec.limits, volunteerLimits());
        if (tooBig) {
          log(`refused build ${msg.buildId} (${msg.spec.builder}): ${tooBig}`);
          void send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'finished', result: 'error', message: `refused by worker ${name}: ${tooBig}` });
          return;
        }
        const controller = new AbortController();
        const gate = new FreezeGate();
        if (!governor.current.run) void gate.freeze();
        const localId = historySafe(() => history.start({ buildId: msg.buildId, attempt: msg.attempt, master: url, builder: msg.spec.builder, revision: msg.spec.revision, spec: msg.spec }), null);
        let localLogOk = localId !== null;
        log(`build ${msg.buildId} (${msg.spec.builder}) attempt ${msg.attempt} started`);
        const done = runBuild({
          buildId: msg.buildId, attempt: msg.attempt, spec: msg.spec, executor, workRoot, volunteerLimits: volunteerLimits(), masterUrl: url,
          send: (m) => link.send(m), sendLog: (text) => link.sendLog(msg.buildId, msg.attempt, text), signal: controller.signal, gate,
          localLog: (data) => { if (localLogOk && localId !== null) localLogOk = historySafe(() => { history.appendLog(localId, data); return true; }, false); },
        }).then((result) => {
          if (localId !== null) historySafe(() => history.finish(localId, result, null, gate.frozenMs), undefined);
          log(`build ${msg.buildId} ${result}`);
        }).catch((e: Error) => {
          if (localId !== null) historySafe(() => history.finish(localId, 'error', e.message, gate.frozenMs), undefined);
          log(`build ${msg.buildId} failed: ${e.message}`);
        }).finally(() => running.delete(msg.buildId));
        running.set(msg.buildId, { historyId: localId, attempt: msg.attempt, builder: msg.spec.builder, startedAt: new Date().toISOString(), controller, gate, done });
        if (gate.frozen) void send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'frozen', result: null, message: governor.current.reason });
        return;
      }
      case 'cancel': {
        const r = running.get(msg.buildId);
        if (r && r.attempt === msg.attempt) {
          log(`build ${msg.buildId} cancelled: ${msg.reason}`);
          r.controller.abort();
        }
        return;
      }
      case 'welcome':
      case 'error':
        return;
      default:
        assertNever(msg, 'master message');
    }
  };

  const status = (): AgentStatus => {
    const d = governor.current;
    const builds = [...running.entries()];
    const state = !link.connected ? 'offline' : d.paused ? 'paused' : builds.some(([, r]) => r.gate.frozen) ? 'frozen' : builds.length ? 'busy' : 'idle';
    return {
      state, accepting: d.run, reason: d.reason,
      idleSource: { name: idle.name, why: idle.why },
      idleMs: Number.isFinite(governor.lastIdleMs) ? governor.lastIdleMs : null,
      master: { url, connected: link.connected }, name, executors: [...executors.keys()],
      current: builds.map(([buildId, r]) => ({ buildId, builder: r.builder, frozen: r.gate.frozen, startedAt: r.startedAt, ...(r.historyId !== null ? { historyId: r.historyId } : {}) })),
      preferences: prefs.get(),
    };
  };
  /** Local re-runs (from the control API): run now, outside the master and its idle rules. */
  const localRuns = new Map<number, { controller: AbortController; done: Promise<unknown> }>();
  const rerun = (id: number): HistoryEntry => {
    const entry = history.get(id);
    if (!entry) throw new Error(`no local build ${id}`);
    const parsed = BuildSpecSchema.safeParse(history.spec(id));
    if (!parsed.success) throw new Error(`local build ${id} kept no build spec to run again`);
    const spec: BuildSpec = parsed.data;
    const executor = executors.get(spec.executor === 'any' ? 'container' : spec.executor);
    if (!executor) throw new Error(`this worker has no ${spec.executor} executor`);
    const localId = history.start({ buildId: entry.buildId, attempt: entry.attempt, master: 'local', builder: spec.builder, revision: spec.revision, spec, rerunOf: id });
    const controller = new AbortController();
    const gate = new FreezeGate();
    log(`local re-run ${localId} of ${spec.builder} (local build ${id}) started`);
    const done = runBuild({
      buildId: entry.buildId, attempt: entry.attempt, spec, executor, workRoot, volunteerLimits: volunteerLimits(), masterUrl: entry.master,
      send: async () => undefined, sendLog: () => undefined, signal: controller.signal, gate, localLog: (data) => history.appendLog(localId, data),
    }).then((result) => history.finish(localId, result, 'local re-run', gate.frozenMs),
      (e: Error) => history.finish(localId, 'error', e.message, gate.frozenMs))
      .finally(() => localRuns.delete(localId));
    localRuns.set(localId, { controller, done });
    return history.get(localId)!;
  };
  const control = await startControlServer(dataDir, {
    status,
    history,
    rerun: async (id) => rerun(id),
    pause: async () => { prefs.update({ paused: true }); await governor.refresh(); },
    resume: async () => { prefs.update({ paused: false, snoozeUntil: null }); await governor.refresh(); },
    snooze: async (ms) => { prefs.update({ snoozeUntil: new Date(Date.now() + ms).toISOString() }); await governor.refresh(); },
    updatePreferences: async (change) => { const p = prefs.update(change); await governor.refresh(); return p; },
    reportIdle: (r) => {
      if (!(idle instanceof ReportedIdleSource)) return false;
      idle.report(r);
      void governor.refresh();
      return true;
    },
  }, { ...(opts.controlPort !== undefined ? { port: opts.controlPort } : {}) });

  await governor.start();
  let finish!: () => void;
  const done = new Promise<void>((ok) => { finish = ok; });
  link.on('message', onMessage);
  link.on('connected', () => log(`connected to ${url} as ${name} (executors: ${[...executors.keys()].join(', ')})`));
  link.on('warning', (w: string) => log(w));
  link.on('disconnected', (why: string) => {
    log(`disconnected: ${why}`);
    // The master requeues our builds when we vanish; stop them so nothing runs twice.
    for (const r of running.values()) r.controller.abort();
  });
  link.on('fatal', (e: Error) => {
    log(`stopping: ${e.message}`);
    for (const r of running.values()) r.controller.abort();
    finish();
  });
  link.start();

  let closing: Promise<void> | null = null;
  return {
    name,
    executors: [...executors.keys()],
    link,
    controlUrl: control.url,
    status,
    running: () => [...running.keys()],
    done,
    close: () => (closing ??= (async () => {
      link.off('message', onMessage);
      link.close();
      governor.close();
      for (const r of running.values()) { r.controller.abort(); void r.gate.thaw(); }
      for (const r of localRuns.values()) r.controller.abort();
      await Promise.all([...running.values(), ...localRuns.values()].map((r) => r.done));
      await control.close();
      history.close();
      finish();
    })()),
  };
}

/** Why a build needs more than the volunteer allows (memory, disk), or null. */
export function exceedsVolunteer(needs: Limits, allowed: Limits): string | null {
  if (needs.memoryBytes !== undefined && allowed.memoryBytes !== undefined && needs.memoryBytes > allowed.memoryBytes) {
    return `it needs ${formatSize(needs.memoryBytes)} of memory; this volunteer allows ${formatSize(allowed.memoryBytes)}`;
  }
  if (needs.diskBytes !== undefined && allowed.diskBytes !== undefined && needs.diskBytes > allowed.diskBytes) {
    return `it needs ${formatSize(needs.diskBytes)} of disk; this volunteer allows ${formatSize(allowed.diskBytes)}`;
  }
  return null;
}

/** The pin given now (saved for next time), or the one saved for this master URL earlier. */
function rememberPin(dataDir: string, url: string, given: string | undefined): string | undefined {
  const file = join(dataDir, 'master-pin.json');
  if (given !== undefined) {
    if (!/^sha256:[0-9a-fA-F]{64}$/.test(given)) throw new Error(`--pin "${given}" must be sha256: followed by 64 hex digits`);
    writeFileSync(file, `${JSON.stringify({ url, pin: given.toLowerCase() })}\n`, { mode: 0o600 });
    return given.toLowerCase();
  }
  if (!existsSync(file)) return undefined;
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { url?: string; pin?: string };
    return saved.url === url ? saved.pin : undefined;
  } catch {
    throw new Error(`${file} is unreadable; delete it and pass --pin again`);
  }
}
