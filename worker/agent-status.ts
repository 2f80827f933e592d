import type { AgentStatus, Preferences } from '../protocol/control-api.js';
import type { Running } from './build-intake.js';
import type { Decision } from './policy.js';
import type { Conn } from './project-conn.js';

export interface StatusView {
  name: string;
  executors: readonly string[];
  decision: Decision;
  idleSource: { name: string; why: string };
  lastIdleMs: number;
  temperatureC: number | null;
  preferences: Preferences;
  builds: [number, Running][];
  projects: readonly Pick<Conn, 'name' | 'url' | 'worker' | 'share' | 'project' | 'link' | 'running' | 'lastOffer' | 'usedMs'>[];
  /** A project's slot-milliseconds, its finished builds' and its running ones' so far. */
  usedMs: (c: StatusView['projects'][number]) => number;
}

/**
 * What the control API's `GET /status` says (the tray, `crowdbake status`): offline while no
 * master is connected; else paused, frozen (a build frozen or held by a CPU cap), busy or idle.
 */
export function agentStatus(v: StatusView): AgentStatus {
  const d = v.decision;
  const first = v.projects[0];
  const anyConnected = v.projects.some((c) => c.link.connected);
  const held = (r: Running) => r.gate.frozen || r.gate.heldByCap;
  const state = !anyConnected ? 'offline' : d.paused ? 'paused' : v.builds.some(([, r]) => held(r)) ? 'frozen' : v.builds.length ? 'busy' : 'idle';
  return {
    state, accepting: d.run, reason: d.reason,
    idleSource: v.idleSource,
    idleMs: Number.isFinite(v.lastIdleMs) ? v.lastIdleMs : null,
    master: { url: first?.url ?? '', connected: first?.link.connected ?? false }, name: v.name, executors: [...v.executors],
    current: v.builds.map(([buildId, r]) => ({ buildId, builder: r.builder, frozen: held(r), startedAt: r.startedAt, ...(r.historyId !== null ? { historyId: r.historyId } : {}) })),
    preferences: v.preferences,
    cpuCap: d.freeze ? null : d.cpuCap, temperatureC: v.temperatureC,
    projects: v.projects.map((c) => ({
      name: c.name, master: c.project.master, worker: c.worker, share: c.share, connected: c.link.connected,
      running: c.running.size, usedSeconds: Math.round(v.usedMs(c) / 1000), offered: c.lastOffer?.accepting ?? false,
    })),
  };
}
