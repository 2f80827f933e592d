import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Limits } from '../../protocol/build-spec.js';
import type { AgentStatus, Preferences } from '../../protocol/control-api.js';
import { startControlServer } from '../control-server.js';
import { FreezeGate } from '../freeze-gate.js';
import { Governor } from '../governor.js';
import { HistoryStore } from '../history-store.js';
import { detectIdleSource, type IdleSourceChoice } from '../idle/detect-idle.js';
import { ReportedIdleSource } from '../idle/idle-source.js';
import type { Decision } from '../policy.js';
import { PreferencesStore } from '../preferences-store.js';
import { startBuildbotWorker, type BuildbotWorker, type BuildbotWorkerOptions } from './worker.js';

/**
 * A BuildBot worker on a volunteer's desktop: the same rules as the native agent
 * (worker/agent.ts) decide when BuildBot's commands may run — the volunteer's preferences in
 * DATA/preferences.json, the idle source, pause/resume/snooze through the local control API —
 * applied by the same Governor and FreezeGate. When they say no, running commands are frozen
 * (host: SIGSTOP to their process groups; container: the sandbox's cgroup is frozen) with
 * their `timeout`/`maxTime` stopped, and new commands wait frozen; the connection to the
 * master stays up and answers its keepalives and pings.
 */

export interface BuildbotVolunteerOptions extends Omit<BuildbotWorkerOptions, 'freezeGate' | 'limits'> {
  /** Preferences, control.json and the local history live here. */
  dataDir: string;
  idleSource?: IdleSourceChoice;
  /** Preferences given on the command line; they override (and update) the saved ones. */
  preferences?: Partial<Preferences>;
  /** Port of the control API on 127.0.0.1 (default: any free port; see DATA/control.json). */
  controlPort?: number;
}

export interface BuildbotVolunteer {
  worker: BuildbotWorker;
  controlUrl: string;
  status(): AgentStatus;
  close(): Promise<void>;
}

export async function startBuildbotVolunteer(o: BuildbotVolunteerOptions): Promise<BuildbotVolunteer> {
  const log = o.log ?? ((l: string) => console.log(l));
  const dataDir = resolve(o.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const prefs = new PreferencesStore(dataDir);
  if (prefs.problem) log(`crowdbake worker: ${prefs.problem}`);
  if (o.preferences && Object.keys(o.preferences).length) prefs.update(o.preferences);
  const idle = await detectIdleSource(o.idleSource ?? 'auto');
  log(`crowdbake worker: idle source: ${idle.name} (${idle.why})`);

  const gate = new FreezeGate();
  let worker: BuildbotWorker | null = null;
  const governor = new Governor(idle, () => prefs.get(), () => (worker?.running().length ?? 0) > 0);
  const apply = async (d: Decision): Promise<void> => {
    const started = Date.now();
    // Held (paused, away rules, finishing-then-pausing: BuildBot's commands cannot be told apart by build) or
    // running, under the CPU cap of "keep going gently" or a temperature cap when there is one.
    if (d.run) { await gate.limitCpu(d.cpuCap); await gate.thaw(); } else await gate.freeze();
    const n = worker?.running().length ?? 0;
    log(`crowdbake worker: ${d.run ? 'commands may run' : 'commands held'}: ${d.reason}${n ? ` (${n} command(s) ${d.run ? 'thawed' : 'frozen'} in ${Date.now() - started} ms)` : ''}`);
  };
  let applying: Promise<void> = Promise.resolve();
  governor.on('change', (d) => { applying = applying.then(() => apply(d)).catch((e: Error) => log(`crowdbake worker: freeze/thaw failed: ${e.message}`)); });
  await governor.start();
  // Until the governor says otherwise (its first decision is not a change), nothing runs.
  if (!governor.current.run) await gate.freeze();

  const limits = (): Limits => {
    const p = prefs.get();
    return { ...(p.cpus !== null ? { cpus: p.cpus } : {}), ...(p.memoryBytes !== null ? { memoryBytes: p.memoryBytes } : {}) };
  };
  let w: BuildbotWorker;
  try {
    w = worker = await startBuildbotWorker({ ...o, freezeGate: gate, limits });
  } catch (e) {
    governor.close();
    throw e;
  }

  const status = (): AgentStatus => {
    const d = governor.current;
    const running = w.running();
    const state = !w.connected ? 'offline' : d.paused ? 'paused' : running.length && gate.frozen ? 'frozen' : running.length ? 'busy' : 'idle';
    return {
      state, accepting: d.run, reason: d.reason,
      idleSource: { name: idle.name, why: idle.why },
      idleMs: Number.isFinite(governor.lastIdleMs) ? governor.lastIdleMs : null,
      master: { url: o.url, connected: w.connected }, name: o.name, executors: [o.executor],
      current: running.map((c) => ({ buildId: Number(c.id) || 0, builder: c.builder, frozen: gate.frozen, startedAt: c.startedAt })),
      preferences: prefs.get(),
    };
  };
  let history: HistoryStore | null = null;
  let control: { url: string; close(): Promise<void> };
  try {
    const h = history = new HistoryStore(dataDir);
    control = await startControlServer(dataDir, {
      status,
      history: h,
      rerun: () => Promise.reject(new Error('a BuildBot worker keeps no build specs; its builds are re-run from the BuildBot master')),
      pause: async () => { prefs.update({ paused: true }); await governor.refresh(); await applying; },
      resume: async () => { prefs.update({ paused: false, snoozeUntil: null }); await governor.refresh(); await applying; },
      snooze: async (ms) => { prefs.update({ snoozeUntil: new Date(Date.now() + ms).toISOString() }); await governor.refresh(); await applying; },
      updatePreferences: async (change) => { const p = prefs.update(change); await governor.refresh(); await applying; return p; },
      reportIdle: (r) => {
        if (!(idle instanceof ReportedIdleSource)) return false;
        idle.report(r);
        void governor.refresh();
        return true;
      },
    }, o.controlPort);
  } catch (e) {
    governor.close();
    history?.close();
    await w.close();
    throw e;
  }

  let closing: Promise<void> | null = null;
  return {
    worker: w,
    controlUrl: control.url,
    status,
    close: () => (closing ??= (async () => {
      governor.close();
      await w.close();
      await control.close();
      history?.close();
    })()),
  };
}
