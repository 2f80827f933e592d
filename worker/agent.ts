import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ExecutorKind, Limits } from '../protocol/build-spec.js';
import type { AgentStatus, Preferences } from '../protocol/control-api.js';
import type { MasterMessage } from '../protocol/worker-messages.js';
import { assertNever } from '../protocol/assert-never.js';
import { agentStatus } from './agent-status.js';
import { DecisionApplier } from './apply-decision.js';
import { BuildIntake } from './build-intake.js';
import { readCapabilities } from './capabilities.js';
import { startControlServer } from './control-server.js';
import { detectExecutors } from './executors/detect.js';
import { releaseStaleDiskLimits } from './executors/disk-limit.js';
import type { Executor } from './executors/executor.js';
import { Governor } from './governor.js';
import { HistoryStore } from './history-store.js';
import { detectIdleSource, type IdleSourceChoice } from './idle/detect-idle.js';
import { ReportedIdleSource } from './idle/idle-source.js';
import { masterUrls, type MasterLink } from './master-link.js';
import { connectProject, type Conn, type ProjectLink } from './project-conn.js';
import { PreferencesStore } from './preferences-store.js';
import { listProjects, projectKey } from './projects.js';
import { projectChanges } from './projects-watch.js';
import { SlotOffers } from './slot-offers.js';
import type { KeyObject } from 'node:crypto';
import type { runBuild as RunBuild } from './runner.js';
import { watchInterruption } from './interruption-notice.js';
import { LocalReruns } from './local-reruns.js';
import { forgetBuildDirs } from './build-dirs.js';
import { applyStartSwitches, pauseIfFinished } from './volunteer-switches.js';

/**
 * The runner (checkout, stages, artifacts, provenance signing with @sigstore/core) is loaded at
 * the first build, not at start: a connected, idle worker does not carry it (about 3 MiB,
 * bench/README.md). Its first message, `accepted`, so goes out after the load; the master
 * ignores that message's order (coordinator.ts).
 */
let runner: Promise<typeof import('./runner.js')> | undefined;
// Kept once loaded: an import() of a module already loaded still waits on the module loader, about
// 0.2 ms of each build's start (bench/README.md, "Submit → step running on the AMD machine").
// A load that failed (too many open files, a file replaced mid-upgrade) is tried again next build.
const runBuild: typeof RunBuild = async (ctx) => {
  runner ??= import('./runner.js').catch((e: unknown) => { runner = undefined; throw e; });
  return (await runner).runBuild(ctx);
};

export type { ProjectLink } from './project-conn.js';

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

/** How often DATA/projects is re-read (leave, share changes). */
const PROJECTS_POLL_MS = 500;

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
  const initial = initialProjects(opts, dataDir);
  const workerOf = (p: ProjectLink) => (opts.master !== undefined ? p.name : tokenWorkerName(p.token) ?? p.name);
  const name = workerOf(initial[0]!);
  const workRoot = join(dataDir, 'work');
  // Workdirs left by an earlier run that crashed belong to builds the master has requeued;
  // those with a disk limit are mounted filesystems, unmounted first.
  await releaseStaleDiskLimits(workRoot);
  rmSync(workRoot, { recursive: true, force: true });
  forgetBuildDirs(workRoot);
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
  /** The projects served, each with its own link and builds; limits, idle rules and freeze span them all. */
  const conns = new Map<string, Conn>();
  /** Projects left (or fatally refused) whose builds are still stopping. */
  const gone = new Set<Conn>();
  // [cloud] Leaving: SIGTERM, `crowdbake drain`, the master's drain, a spot interruption notice.
  let draining: { now: boolean; reason: string } | null = null;
  /** Projects whose master sent `drain` (their name → the token they were served with); not dialed again. */
  const drainedByMaster = new Map<string, string>();
  let drained = false;
  const allRunning = () => [...conns.values(), ...gone].flatMap((c) => [...c.running.entries()]);
  const runningCount = () => allRunning().length + intake.heldCount;
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

  // Freeze/thaw, the masters told, warm sandboxes (apply-decision.ts).
  const decisions = new DecisionApplier({
    executors, allRunning, projects: () => conns.values(), draining: () => draining !== null, offer: (force) => offer(force), log,
  });
  governor.on('change', (d) => { void decisions.apply(d); });
  // The assign path (build-intake.ts): what a master sends is checked there before it touches the host.
  const intake = new BuildIntake({
    executors, maxBuilds, workRoot, agentVersion: opts.agentVersion ?? '0.1.0', volunteerLimits,
    decision: () => governor.current, history, runBuild, allRunning, serves: (c) => conns.get(c.name) === c, log,
    ended: () => { if (pauseIfFinished(prefs, allRunning().length)) { log('paused: the current build finished, as the volunteer asked'); void governor.refresh(); } },
    changed: (why) => { offer(); if (why === 'finished') drainedYet(); },
  });

  const onMessage = (c: Conn, msg: MasterMessage): void => {
    switch (msg.type) {
      case 'assign':
        intake.assign(c, msg);
        return;
      case 'cancel':
        intake.cancel(c, msg);
        return;
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

  const status = (): AgentStatus => agentStatus({
    name, executors: [...executors.keys()], decision: governor.current, idleSource: { name: idle.name, why: idle.why },
    lastIdleMs: governor.lastIdleMs, temperatureC: governor.temperatureC, preferences: prefs.get(),
    builds: allRunning(), projects: [...conns.values()], usedMs,
  });
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

  const usedMs = (c: Pick<Conn, 'usedMs' | 'running'>) => c.usedMs + [...c.running.values()].reduce((a, r) => a + (Date.now() - r.started), 0);
  // [crowd] Which project may take the next free slot (worker/slot-offers.ts).
  const offers = new SlotOffers({
    decision: () => governor.current, projects: () => [...conns.values()], busy: runningCount, maxBuilds, usedMs,
    draining: () => draining !== null, log,
  });
  const offer = (force = false): void => offers.offer(force);

  // One project's master link, wired to the agent (project-conn.ts).
  const connect = (p: ProjectLink): Conn => connectProject(p, {
    worker: workerOf(p), where: conns.size || fromData ? `${p.name}: ` : '', executors: [...executors.keys()],
    agentVersion: opts.agentVersion ?? '0.1.0', ...(opts.backoff ? { backoff: opts.backoff } : {}),
    availability: (c) => (draining ? { accepting: false, reason: `draining: ${draining.reason}` }
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
    draining: () => draining, onMessage, offer: () => offer(), stopBuilds,
    fatal: (c) => { drop(c); if (conns.size === 0 && !fromData) finish(); },
    log,
  });
  const stopBuilds = (c: Conn) => {
    for (const r of c.running.values()) r.controller.abort();
    intake.dropHeld(c);
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
    void decisions.setWarm(false);
    log(`draining (${reason}): ${now ? 'giving the running builds back now' : `finishing ${allRunning().length} build(s), taking no new ones`}`);
    for (const c of conns.values()) {
      void c.send({ type: 'drain', now, reason });
      if (now) stopBuilds(c);
    }
    intake.dropHeld();
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
      intake.dropHeld();
      for (const c of conns.values()) { c.link.removeAllListeners('message'); c.link.close(); }
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



/**
 * The projects served at start: the one of `--master`/`--token` (its pin remembered for the
 * next start), those given, or those joined in DATA/projects. Throws, naming what is missing.
 */
export function initialProjects(opts: Pick<WorkerOptions, 'master' | 'token' | 'name' | 'pin' | 'workerKey' | 'projects' | 'dataDir'>, dataDir: string): ProjectLink[] {
  if (opts.master !== undefined) {
    if (!opts.token) throw new Error('--master needs --token (or join the project with `crowdbake join LINK` and start with --data only)');
    const single = opts.name ?? tokenWorkerName(opts.token);
    if (!single) throw new Error('--token does not look like a worker token (cbw1.NAME.SECRET); pass the token `crowdbake token create` printed');
    const url = masterUrls(opts.master)[0]!;
    const pin = rememberPin(dataDir, url, opts.pin);
    return [{ name: single, master: opts.master, token: opts.token, ...(pin ? { pin } : {}), share: 1, ...(opts.workerKey ? { key: opts.workerKey } : {}) }];
  }
  const initial = opts.projects ?? projectLinks(dataDir);
  if (initial.length === 0) throw new Error(`this agent has joined no project (${join(dataDir, 'projects')} is empty): run \`crowdbake join LINK --data ${opts.dataDir}\` first, or pass --master and --token`);
  return initial;
}

/** The worker name inside a worker token (`cbw1.NAME.SECRET`), or undefined if it is not one. */
function tokenWorkerName(token: string): string | undefined {
  return /^cbw1\.([^.]+)\./.exec(token)?.[1];
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
