import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ExecutorKind, Limits } from '../protocol/build-spec.js';
import type { AgentStatus, Preferences } from '../protocol/control-api.js';
import type { MasterMessage } from '../protocol/worker-messages.js';
import { assertNever } from '../protocol/assert-never.js';
import { assignmentRefusal, executorFor } from './assignment-check.js';
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
import { MasterLink, masterUrls } from './master-link.js';
import type { Decision } from './policy.js';
import { PreferencesStore } from './preferences-store.js';
import { listProjects, projectKey } from './projects.js';
import { projectChanges } from './projects-watch.js';
import { SlotOffers } from './slot-offers.js';
import type { KeyObject } from 'node:crypto';
import type { runBuild as RunBuild } from './runner.js';
import { watchInterruption } from './interruption-notice.js';
import { LocalReruns } from './local-reruns.js';
import { applyStartSwitches, pauseIfFinished } from './volunteer-switches.js';

/**
 * The runner (checkout, stages, artifacts, provenance signing with @sigstore/core) is loaded at
 * the first build, not at start: a connected, idle worker does not carry it (about 3 MiB,
 * bench/README.md). Its first message, `accepted`, so goes out after the load; the master
 * ignores that message's order (coordinator.ts).
 */
const runBuild: typeof RunBuild = async (ctx) => (await import('./runner.js')).runBuild(ctx);

/** One project (master) this agent serves, with its share of the machine ([crowd]). */
export interface ProjectLink {
  name: string;
  master: string;
  token: string;
  pin?: string;
  share: number;
  /** [provenance] The worker key enrolled when it joined: successful attempts are signed with it. */
  key?: KeyObject;
}

export interface WorkerOptions {
  /** A single master (`--master`/`--token`); without it, the projects joined in DATA/projects. */
  master?: string;
  token?: string;
  /** Several masters at once, each with a share; DATA/projects is read (and watched) when neither this nor master is given. */
  projects?: ProjectLink[];
  /** Defaults to the name inside the token. */
  name?: string;
  dataDir: string;
  /** The volunteer's directory of base files (`rootfs:NAME`, `vm:NAME`); default DATA/bases. */
  basesDir?: string;
  executor: 'auto' | ExecutorKind;
  labels: string[];
  maxBuilds?: number;
  /** Environments the container executor keeps a warm sandbox for (`--warm`, default 1; 0: none). */
  warmSandboxes?: number;
  /** Preferences given on the command line; they override (and update) the persisted ones. */
  preferences?: Partial<Preferences>;
  idleSource?: IdleSourceChoice;
  /** Port of the local control API on 127.0.0.1 (default: any free port; see DATA/control.json). */
  controlPort?: number;
  /** [provenance] With --master: the worker key enrolled for this worker (joined projects carry their own). */
  workerKey?: KeyObject;
  /** `sha256:HEX` fingerprint of the master's TLS certificate (from `crowdbake token create`); kept in DATA/master-pin for later starts. */
  pin?: string;
  agentVersion?: string;
  backoff?: { minMs: number; maxMs: number };
  /** Where thermal zones are read for the temperature cap (default /sys/class/thermal; tests give a directory of their own). */
  thermalRoot?: string;
  log?: (line: string) => void;
  /** [cloud] The instance metadata service to poll for a spot interruption notice (`--interruption-url`); absent: none. */
  interruptionUrl?: string;
}

export interface WorkerHandle {
  name: string;
  executors: ExecutorKind[];
  /** The first project's link (the only one with --master). */
  link: MasterLink;
  /** Every project's link by project name. */
  links(): Map<string, MasterLink>;
  controlUrl: string;
  status(): AgentStatus;
  /** Build ids running now. */
  running(): number[];
  /** Resolves when the worker stops for good (closed, refused by the master, or drained). */
  done: Promise<void>;
  /**
   * Leaves: takes nothing new, tells each master it is draining, and once no build runs here
   * closes (`done` resolves, `drained` is then true). `now` gives the running builds back at
   * once (the master requeues them as an infrastructure retry). A second call with `now` upgrades.
   */
  drain(now: boolean, reason: string): void;
  readonly drained: boolean;
  close(): Promise<void>;
}

interface Running {
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

/** How often DATA/projects is re-read (leave, share changes). */
const PROJECTS_POLL_MS = 500;

/** One project's connection: its master link and the builds running for it. */
interface Conn {
  name: string;
  url: string;
  worker: string;
  share: number;
  project: ProjectLink;
  link: MasterLink;
  send: (m: Parameters<MasterLink['send']>[0]) => Promise<void | undefined>;
  running: Map<number, Running>;
  /** Aborts for assignments waiting for a slot, by build id. */
  heldAborts: Map<number, () => void>;
  /** Slot-milliseconds used by finished builds. */
  usedMs: number;
  /** What this project is told: whether it may assign now. */
  availability: { accepting: boolean; reason: string };
  lastOffer: { accepting: boolean; reason: string } | null;
}

/** The projects joined in DATA/projects, as links. */
export function projectLinks(dataDir: string): ProjectLink[] {
  return listProjects(dataDir).map((p) => {
    const key = projectKey(dataDir, p.name);
    return { name: p.name, master: p.master, token: p.token, share: p.share, ...(p.pin ? { pin: p.pin } : {}), ...(key ? { key } : {}) };
  });
}

/**
 * Starts the volunteer agent: picks executors, cleans up leftovers, applies the volunteer's
 * preferences (idle, schedule, battery, pause), serves the local control API, connects to the
 * master and runs — or freezes — what it is assigned.
 */
export async function startWorker(opts: WorkerOptions): Promise<WorkerHandle> {
  const log = opts.log ?? ((l: string) => console.log(`crowdbake worker: ${l}`));
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const fromData = opts.master === undefined && opts.projects === undefined;
  let initial: ProjectLink[];
  if (opts.master !== undefined) {
    if (!opts.token) throw new Error('--master needs --token (or join the project with `crowdbake join LINK` and start with --data only)');
    const tokenName = /^cbw1\.([^.]+)\./.exec(opts.token)?.[1];
    const single = opts.name ?? tokenName;
    if (!single) throw new Error('--token does not look like a worker token (cbw1.NAME.SECRET); pass the token `crowdbake token create` printed');
    const url = masterUrls(opts.master)[0]!;
    const pin = rememberPin(dataDir, url, opts.pin);
    initial = [{ name: single, master: opts.master, token: opts.token, ...(pin ? { pin } : {}), share: 1, ...(opts.workerKey ? { key: opts.workerKey } : {}) }];
  } else {
    initial = opts.projects ?? projectLinks(dataDir);
    if (initial.length === 0) throw new Error(`this agent has joined no project (${join(dataDir, 'projects')} is empty): run \`crowdbake join LINK --data ${opts.dataDir}\` first, or pass --master and --token`);
  }
  const workerOf = (p: ProjectLink) => (opts.master !== undefined ? p.name : /^cbw1\.([^.]+)\./.exec(p.token)?.[1] ?? p.name);
  const name = workerOf(initial[0]!);
  const workRoot = join(dataDir, 'work');
  // Workdirs left by an earlier run that crashed belong to builds the master has requeued;
  // those with a disk limit are mounted filesystems, unmounted first.
  await releaseStaleDiskLimits(workRoot);
  rmSync(workRoot, { recursive: true, force: true });
  mkdirSync(workRoot, { recursive: true });

  const prefs = new PreferencesStore(dataDir);
  if (prefs.problem) log(prefs.problem);
  if (opts.preferences && Object.keys(opts.preferences).length) prefs.update(opts.preferences);
  const switched = applyStartSwitches(prefs);
  if (switched) log(switched);

  const detected = await detectExecutors(`w-${name}`.toLowerCase().replace(/[^a-z0-9-]/g, '-'), opts.executor, {
    dataDir, ...(opts.basesDir ? { basesDir: resolve(opts.basesDir) } : {}),
    ...(opts.warmSandboxes !== undefined ? { warmSandboxes: opts.warmSandboxes } : {}), log,
  });
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
  /** The projects served, each with its own link and builds; limits, idle rules and freeze span them all. */
  const conns = new Map<string, Conn>();
  /** Projects left (or fatally refused) whose builds are still stopping. */
  const gone = new Set<Conn>();
  /** Assignments that arrived while every slot was taken (a master answering a withdrawn offer): they start when one frees. */
  const held: { conn: Conn; start: () => void }[] = [];
  // [cloud] Leaving: SIGTERM, `crowdbake drain`, the master's drain, a spot interruption notice.
  let draining: { now: boolean; reason: string } | null = null;
  /** Projects whose master sent `drain` (their name → the token they were served with); not dialed again. */
  const drainedByMaster = new Map<string, string>();
  let drained = false;
  const allRunning = () => [...conns.values(), ...gone].flatMap((c) => [...c.running.entries()]);
  const runningCount = () => allRunning().length + held.length;
  const governor = new Governor(idle, () => prefs.get(), () => allRunning().length > 0, opts.thermalRoot);
  const maxBuilds = opts.maxBuilds ?? 1;

  const volunteerLimits = (): Limits => {
    const p = prefs.get();
    return {
      ...(p.cpus !== null ? { cpus: p.cpus } : {}),
      ...(p.memoryBytes !== null ? { memoryBytes: p.memoryBytes } : {}),
      ...(p.diskBytes !== null ? { diskBytes: p.diskBytes } : {}),
    };
  };

  /** Warm sandboxes only while builds may run: removed when paused, in use, off schedule, too hot, draining or stopping. */
  const setWarm = (allowed: boolean): Promise<void> => Promise.all([...executors.values()].map((e) =>
    e.setWarm?.(allowed).catch((err: Error) => log(`warm sandboxes: ${err.message}`)))).then(() => {});
  /** Freeze or thaw every build, then tell the master (it shows `frozen` and stops assigning). */
  const applyDecision = async (d: Decision) => {
    const started = Date.now();
    void setWarm(d.run && !draining);
    const builds = allRunning();
    // Frozen, or running — under the CPU cap of "keep going gently" (or a temperature cap) when there is one.
    if (!d.freeze) await Promise.all(builds.map(async ([, r]) => { await r.gate.limitCpu(d.cpuCap); await r.gate.thaw(); }));
    else await Promise.all(builds.map(([, r]) => r.gate.freeze()));
    for (const c of conns.values()) {
      for (const [buildId, r] of c.running) {
        void c.send({ type: 'state', buildId, attempt: r.attempt, state: d.freeze || r.gate.heldByCap ? 'frozen' : 'running', result: null, message: d.reason });
      }
    }
    offer(true);
    log(`${d.run ? 'builds may run' : 'builds held'}: ${d.reason}${builds.length ? ` (${builds.length} build(s) ${d.run ? 'thawed' : 'frozen'} in ${Date.now() - started} ms)` : ''}`);
  };
  let applying: Promise<void> = Promise.resolve();
  governor.on('change', (d) => { applying = applying.then(() => applyDecision(d)).catch((e: Error) => log(`freeze/thaw failed: ${e.message}`)); });

  const onMessage = (c: Conn, msg: MasterMessage, fromHeld = false): void => {
    const { running, send, url, link } = c;
    const name = c.worker;
    switch (msg.type) {
      case 'assign': {
        // What the master sent is checked before anything of it touches the host (assignment-check.ts).
        const refusal = assignmentRefusal(msg.spec, { executors, running: running.has(msg.buildId), volunteerLimits: volunteerLimits() });
        if (refusal) {
          if (refusal.volunteer) log(`refused build ${msg.buildId} (${msg.spec.builder}): ${refusal.message}`);
          void send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'finished', result: 'error',
            message: refusal.volunteer ? `refused by worker ${name}: ${refusal.message}` : refusal.message });
          return;
        }
        const executor = executors.get(executorFor(msg.spec))!;
        const controller = new AbortController();
        const gate = new FreezeGate();
        if (allRunning().length >= maxBuilds || (held.length > 0 && !fromHeld)) {
          // Every slot is taken (this master answered an offer just withdrawn): it waits for one,
          // so the builds running here never exceed the volunteer's --builds.
          log(`build ${msg.buildId} (${msg.spec.builder}) for ${c.name} waits for a free slot`);
          const entry = { conn: c, start: () => { c.heldAborts.delete(msg.buildId); if (conns.get(c.name) === c && !controller.signal.aborted) onMessage(c, msg, true); } };
          held.push(entry);
          c.heldAborts.set(msg.buildId, () => { const i = held.indexOf(entry); if (i >= 0) held.splice(i, 1); controller.abort(); });
          return;
        }
        if (governor.current.freeze) void gate.freeze();
        else if (governor.current.cpuCap !== null) void gate.limitCpu(governor.current.cpuCap);
        const localId = historySafe(() => history.start({ buildId: msg.buildId, attempt: msg.attempt, master: url, builder: msg.spec.builder, revision: msg.spec.revision, spec: msg.spec }), null);
        let localLogOk = localId !== null;
        log(`build ${msg.buildId} (${msg.spec.builder}) attempt ${msg.attempt} started`);
        const done = runBuild({
          buildId: msg.buildId, attempt: msg.attempt, spec: msg.spec, executor, workRoot, volunteerLimits: volunteerLimits(), masterUrl: url,
          send: (m) => link.send(m), sendLog: (text) => link.sendLog(msg.buildId, msg.attempt, text), signal: controller.signal, gate,
          ...(c.project.key ? { provenance: { worker: name, key: c.project.key, agentVersion: opts.agentVersion ?? '0.1.0' } } : {}),
          localLog: (data) => { if (localLogOk && localId !== null) localLogOk = historySafe(() => { history.appendLog(localId, data); return true; }, false); },
        }).then((result) => {
          if (localId !== null) historySafe(() => history.finish(localId, result, null, gate.frozenMs, gate.cpuMs), undefined);
          log(`build ${msg.buildId} ${result}`);
        }).catch((e: Error) => {
          if (localId !== null) historySafe(() => history.finish(localId, 'error', e.message, gate.frozenMs, gate.cpuMs), undefined);
          log(`build ${msg.buildId} failed: ${e.message}`);
        }).finally(() => {
          const r = running.get(msg.buildId);
          if (r) c.usedMs += Date.now() - r.started;
          running.delete(msg.buildId);
          if (pauseIfFinished(prefs, allRunning().length)) { log('paused: the current build finished, as the volunteer asked'); void governor.refresh(); }
          startHeld();
          offer();
          drainedYet();
        });
        running.set(msg.buildId, { historyId: localId, attempt: msg.attempt, builder: msg.spec.builder, startedAt: new Date().toISOString(), started: Date.now(), controller, gate, done });
        offer();
        if (gate.frozen) void send({ type: 'state', buildId: msg.buildId, attempt: msg.attempt, state: 'frozen', result: null, message: governor.current.reason });
        return;
      }
      case 'cancel': {
        const r = running.get(msg.buildId);
        if (r && r.attempt === msg.attempt) {
          log(`build ${msg.buildId} cancelled: ${msg.reason}`);
          r.controller.abort();
        }
        c.heldAborts.get(msg.buildId)?.();
        return;
      }
      case 'drain':
        // The master asks this worker to leave it. Nothing runs on its word: the worker only
        // stops taking (and, with `now`, stops running) that master's builds, then disconnects
        // from it; the agent exits when it served no other project.
        log(`${c.name}: the master asks this worker to leave (${msg.reason})`);
        if (conns.size === 1) drain(msg.now, `asked by the master: ${msg.reason}`);
        else {
          // Remembered with its credential, so that the projects watcher does not dial that
          // master again: drained stays drained until this agent restarts or the volunteer
          // joins that project anew (another token).
          drainedByMaster.set(c.name, c.project.token);
          if (msg.now) stopBuilds(c);
          c.link.close();
          drop(c);
        }
        return;
      case 'welcome':
      case 'error':
      case 'adoption':
      case 'logAck':
        // Read by the link (master-link.ts).
        return;
      default:
        assertNever(msg, 'master message');
    }
  };

  const status = (): AgentStatus => {
    const d = governor.current;
    const builds = allRunning();
    const first = [...conns.values()][0];
    const anyConnected = [...conns.values()].some((c) => c.link.connected);
    const state = !anyConnected ? 'offline' : d.paused ? 'paused' : builds.some(([, r]) => r.gate.frozen || r.gate.heldByCap) ? 'frozen' : builds.length ? 'busy' : 'idle';
    return {
      state, accepting: d.run, reason: d.reason,
      idleSource: { name: idle.name, why: idle.why },
      idleMs: Number.isFinite(governor.lastIdleMs) ? governor.lastIdleMs : null,
      master: { url: first?.url ?? '', connected: first?.link.connected ?? false }, name, executors: [...executors.keys()],
      current: builds.map(([buildId, r]) => ({ buildId, builder: r.builder, frozen: r.gate.frozen || r.gate.heldByCap, startedAt: r.startedAt, ...(r.historyId !== null ? { historyId: r.historyId } : {}) })),
      preferences: prefs.get(),
      cpuCap: d.freeze ? null : d.cpuCap, temperatureC: governor.temperatureC,
      projects: [...conns.values()].map((c) => ({
        name: c.name, master: c.project.master, worker: c.worker, share: c.share, connected: c.link.connected,
        running: c.running.size, usedSeconds: Math.round(usedMs(c) / 1000), offered: c.lastOffer?.accepting ?? false,
      })),
    };
  };
  const localRuns = new LocalReruns({ history, executors, workRoot, volunteerLimits, log, runBuild });
  const control = await startControlServer(dataDir, {
    status,
    history,
    rerun: async (id) => localRuns.rerun(id),
    drain: (now) => drain(now, 'crowdbake drain'),
    pause: async () => { prefs.update({ paused: true }); await governor.refresh(); },
    resume: async () => { prefs.update({ paused: false, snoozeUntil: null, pauseAfterCurrent: false }); await governor.refresh(); },
    snooze: async (ms) => { prefs.update({ snoozeUntil: new Date(Date.now() + ms).toISOString() }); await governor.refresh(); },
    updatePreferences: async (change) => { prefs.update(change); pauseIfFinished(prefs, allRunning().length); await governor.refresh(); return prefs.get(); },
    reportIdle: (r) => {
      if (!(idle instanceof ReportedIdleSource)) return false;
      idle.report(r);
      void governor.refresh();
      return true;
    },
  }, { ...(opts.controlPort !== undefined ? { port: opts.controlPort } : {}) });

  let finish!: () => void;
  const done = new Promise<void>((ok) => { finish = ok; });

  const usedMs = (c: Conn) => c.usedMs + [...c.running.values()].reduce((a, r) => a + (Date.now() - r.started), 0);
  // [crowd] Which project may take the next free slot (worker/slot-offers.ts).
  const offers = new SlotOffers({
    decision: () => governor.current, projects: () => [...conns.values()], busy: runningCount, maxBuilds, usedMs,
    draining: () => draining !== null, log,
  });
  const offer = (force = false): void => offers.offer(force);
  const startHeld = () => {
    while (held.length && runningCount() - held.length < maxBuilds) {
      const h = held.shift()!;
      h.start();
    }
  };

  const connect = (p: ProjectLink): Conn => {
    // Several masters of one farm (`--master URL1,URL2`): the link fails over between them.
    const urls = masterUrls(p.master);
    const url = urls[0]!;
    const worker = workerOf(p);
    if (p.pin) log(`${p.name}: the master's certificate is pinned: ${p.pin}`);
    const c: Conn = {
      name: p.name, url, worker, share: p.share, project: p, running: new Map(), heldAborts: new Map(), usedMs: 0,
      availability: { accepting: false, reason: 'starting' }, lastOffer: null,
      link: null as unknown as MasterLink, send: async () => undefined,
    };
    c.link = new MasterLink({
      url, urls, name: worker, token: p.token, ...(p.pin ? { pin: p.pin } : {}), agentVersion: opts.agentVersion ?? '0.1.0',
      ...(opts.backoff ? { backoff: opts.backoff } : {}),
      running: () => [...c.running].map(([buildId, r]) => ({ buildId, attempt: r.attempt })),
      availability: () => (draining ? { accepting: false, reason: `draining: ${draining.reason}` }
        : conns.size > 1 ? c.availability : { accepting: governor.current.run, reason: governor.current.reason }),
      capabilities: () => {
        const l = volunteerLimits();
        return readCapabilities(dataDir, [...executors.keys()], {
          ...(l.cpus !== undefined ? { cpus: l.cpus } : {}),
          ...(l.memoryBytes !== undefined ? { memoryBytes: l.memoryBytes } : {}),
          ...(l.diskBytes !== undefined ? { diskBytes: l.diskBytes } : {}),
          labels: opts.labels, maxBuilds,
        });
      },
    });
    c.send = (m) => c.link.send(m).catch(() => undefined);
    const where = conns.size || fromData ? `${p.name}: ` : '';
    c.link.on('message', (m: MasterMessage) => onMessage(c, m));
    c.link.on('connected', () => {
      log(`${where}connected to ${c.link.url} as ${worker} (executors: ${[...executors.keys()].join(', ')})`);
      c.lastOffer = c.availability;
      if (draining) void c.send({ type: 'drain', ...draining });
      offer();
    });
    c.link.on('warning', (w: string) => log(`${where}${w}`));
    c.link.on('disconnected', (why: string, holding: boolean) => {
      c.lastOffer = null;
      if (holding) {
        // Several masters: the builds go on; the next master adopts them (or cancels those it
        // may not), and if none does within the window the link says `released`.
        log(`${where}disconnected: ${why}; keeping ${c.running.size} build(s) running for the next master to adopt`);
      } else {
        log(`${where}disconnected: ${why}`);
        // The master requeues our builds when we vanish; stop them so nothing runs twice.
        stopBuilds(c);
      }
      offer();
    });
    c.link.on('released', (why: string) => {
      log(`${where}${why}; stopping its builds`);
      stopBuilds(c);
    });
    c.link.on('fatal', (e: Error) => {
      log(`${where}stopping: ${e.message}`);
      stopBuilds(c);
      drop(c);
      if (conns.size === 0 && !fromData) finish();
    });
    c.link.start();
    return c;
  };
  const stopBuilds = (c: Conn) => {
    for (const r of c.running.values()) r.controller.abort();
    for (const a of [...c.heldAborts.values()]) a();
  };
  const drop = (c: Conn) => {
    if (conns.get(c.name) !== c) return;
    conns.delete(c.name);
    gone.add(c);
    void Promise.all([...c.running.values()].map((r) => r.done)).then(() => gone.delete(c));
    offer();
  };
  // Started once offer() exists: its first decision is applied like any later one (before, it
  // failed with "Cannot access 'offer' before initialization" and was only logged).
  await governor.start();
  for (const p of initial) conns.set(p.name, connect(p));
  offer();

  // `crowdbake leave` and `crowdbake projects share` change DATA/projects; the agent follows.
  const watch = fromData ? setInterval(() => {
    let now: ProjectLink[];
    try { now = projectLinks(dataDir); } catch (e) { log((e as Error).message); return; }
    const served = [...conns.values()].map((c) => ({ ...c.project, share: c.share }));
    // A draining agent dials nothing new; a project its master drained stays left.
    const changes = projectChanges(served, now, (p) => !draining && drainedByMaster.get(p.name) !== p.token);
    for (const ch of changes) {
      const c = ch.kind === 'join' ? undefined : conns.get(ch.name);
      switch (ch.kind) {
        case 'leave':
          log(`${ch.name}: ${ch.why}; disconnecting`);
          c!.link.close();
          stopBuilds(c!);
          drop(c!);
          break;
        case 'rekey':
          // [provenance] `crowdbake projects rotate-key`: the next build is signed with the new one.
          log(`${ch.name}: its worker key changed; builds from now on are signed with the new one`);
          c!.project = { ...c!.project, ...(ch.key ? { key: ch.key } : {}) };
          break;
        case 'share':
          log(`${ch.name}: share ${ch.from} → ${ch.to}`);
          c!.share = ch.to;
          offer();
          break;
        case 'join':
          drainedByMaster.delete(ch.project.name);
          conns.set(ch.project.name, connect(ch.project));
          offer();
          break;
        default:
          assertNever(ch, 'project change');
      }
    }
  }, PROJECTS_POLL_MS) : null;
  watch?.unref();

  const drain = (now: boolean, reason: string) => {
    if (draining && (draining.now || !now)) return;
    draining = { now, reason };
    void setWarm(false);
    log(`draining (${reason}): ${now ? 'giving the running builds back now' : `finishing ${allRunning().length} build(s), taking no new ones`}`);
    for (const c of conns.values()) {
      void c.send({ type: 'drain', now, reason });
      if (now) stopBuilds(c);
    }
    for (const h of held.splice(0)) h.conn.heldAborts.forEach((a) => a());
    drainedYet();
  };
  const drainedYet = () => {
    if (!draining || drained || allRunning().length > 0) return;
    drained = true;
    log('drained: no build runs here; leaving');
    void handle.close();
  };
  const interruption = opts.interruptionUrl
    ? watchInterruption(opts.interruptionUrl, (notice) => drain(true, `spot interruption notice: ${notice}`), log) : null;

  let closing: Promise<void> | null = null;
  const handle: WorkerHandle = {
    name,
    executors: [...executors.keys()],
    link: [...conns.values()][0]!.link,
    links: () => new Map([...conns.values()].map((c) => [c.name, c.link])),
    controlUrl: control.url,
    status,
    running: () => allRunning().map(([id]) => id),
    done,
    drain,
    get drained() { return drained; },
    close: () => (closing ??= (async () => {
      interruption?.stop();
      if (watch) clearInterval(watch);
      offers.close();
      for (const c of conns.values()) { c.link.removeAllListeners('message'); c.link.close(); for (const a of [...c.heldAborts.values()]) a(); }
      governor.close();
      const all = allRunning().map(([, r]) => r);
      for (const r of all) { r.controller.abort(); void r.gate.thaw(); }
      await Promise.all([...all.map((r) => r.done), localRuns.close()]);
      await Promise.all([...executors.values()].map((e) => e.close?.().catch((err: Error) => log(`closing the ${e.kind} executor: ${err.message}`))));
      await control.close();
      history.close();
      finish();
    })()),
  };
  return handle;
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
