import type { Preferences } from '../protocol/control-api.js';
import { formatDuration } from '../protocol/units.js';
import { describeWeek, weekWindow } from './week-schedule.js';

/** What the agent observes at one moment. */
export interface Observations {
  now: Date;
  /** Milliseconds without input; Infinity when away (locked, suspended, no idle source). */
  idleMs: number;
  onBattery: boolean;
  /** CPU used by other programs, % of all CPUs; null when not measured. */
  otherCpuPercent: number | null;
  /** How long other programs' CPU use has stayed above `maxOtherCpuPercent` (0 when it is not). */
  otherCpuHighForMs?: number;
  /** The hottest thermal zone, °C; null when none is readable. */
  temperatureC?: number | null;
  /** CPUs of this machine (for a cap given in %). */
  cpuCount?: number;
}

export interface Decision {
  /** New builds may start (the agent tells its masters it is accepting). */
  run: boolean;
  /** Running builds are frozen. Usually `!run`; not while finishing the current build before a pause. */
  freeze: boolean;
  /** Running builds are held to this many cores ("keep going gently", too hot); null: no cap beyond their limits. */
  cpuCap: number | null;
  /** Paused or snoozed by the volunteer (as opposed to waiting for idle, schedule, power). */
  paused: boolean;
  reason: string;
  /** When to look again even if nothing happens (e.g. the idle threshold or a window edge), ms from now. */
  recheckInMs: number | null;
}

/** Degrees above `maxTemperatureC` at which a throttled build is held (frozen). */
export const HOLD_ABOVE_CAP_C = 5;

/** The cap of "keep going gently" in cores: the tighter of N cores and P % of all CPUs (one core when neither is set). */
export function gentleCap(p: Preferences, cpuCount: number): number {
  const byCores = p.hereLimits.cpus ?? Infinity;
  const byPercent = p.hereLimits.cpuPercent !== null ? (p.hereLimits.cpuPercent / 100) * cpuCount : Infinity;
  const cap = Math.min(byCores, byPercent);
  return Number.isFinite(cap) ? Math.max(0.01, Math.round(cap * 100) / 100) : 1;
}

/**
 * The volunteer's rules, as a pure function of preferences and observations. Order matters:
 * the first rule that says no gives the reason shown in `crowdbake status`.
 */
export function decide(p: Preferences, o: Observations): Decision {
  const no = (reason: string, recheckInMs: number | null = null, paused = false): Decision => ({ run: false, freeze: true, cpuCap: null, paused, reason, recheckInMs });
  if (p.paused) return no('paused by the volunteer', null, true);
  if (p.snoozeUntil) {
    const left = Date.parse(p.snoozeUntil) - o.now.getTime();
    if (left > 0) return no(`snoozed for ${formatDuration(left)} more`, left, true);
  }
  const window = p.weekSchedule ? weekWindow(p.weekSchedule, o.now) : p.schedule ? msUntilWindowEdge(p.schedule, o.now) : null;
  if (window && !window.inside) {
    return no(`outside the schedule (${p.weekSchedule ? describeWeek(p.weekSchedule) : `${p.schedule!.start}–${p.schedule!.end}`})`, window.ms);
  }
  if (o.onBattery && !p.onBattery) return no('on battery power');
  const t = o.temperatureC ?? null;
  if (p.maxTemperatureC !== null && t !== null && t >= p.maxTemperatureC + HOLD_ABOVE_CAP_C) {
    return no(`too hot: ${Math.round(t)} °C (held above ${p.maxTemperatureC + HOLD_ABOVE_CAP_C} °C)`, 5000);
  }
  const cpus = o.cpuCount ?? 1;
  const hot = p.maxTemperatureC !== null && t !== null && t >= p.maxTemperatureC;
  const windowLeft = window ? window.ms : null;
  const here = o.idleMs < p.idleAfterMs;
  const go = (reason: string, cap: number | null, recheckInMs: number | null): Decision => {
    const c = hot ? Math.min(cap ?? Infinity, gentleCap(p, cpus)) : cap;
    const why = hot ? `${reason}; throttled to ${c} CPU(s): ${Math.round(t!)} °C (cap ${p.maxTemperatureC} °C)` : reason;
    const recheck = hot ? Math.min(recheckInMs ?? 5000, 5000) : recheckInMs;
    if (p.pauseAfterCurrent) return { run: false, freeze: false, cpuCap: c, paused: false, reason: `finishing the current build, then pausing (${why})`, recheckInMs: recheck };
    return { run: true, freeze: false, cpuCap: c, paused: false, reason: why, recheckInMs: recheck };
  };
  const gently = p.whileHere === 'gently' && here;
  const hereRecheck = here ? p.idleAfterMs - o.idleMs : null;
  const soonest = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
  if (p.when === 'always') {
    if (gently) return go(`keeping going gently while you use this computer (at most ${gentleCap(p, cpus)} CPU(s))`, gentleCap(p, cpus), soonest(windowLeft, hereRecheck));
    return go('builds run whenever work is assigned', null, windowLeft);
  }
  if (here) {
    if (gently) return go(`keeping going gently while you use this computer (at most ${gentleCap(p, cpus)} CPU(s))`, gentleCap(p, cpus), soonest(windowLeft, hereRecheck));
    return no(`the desktop is in use (idle ${formatDuration(o.idleMs)} of ${formatDuration(p.idleAfterMs)})`, hereRecheck);
  }
  if (p.maxOtherCpuPercent !== null && o.otherCpuPercent !== null && o.otherCpuPercent > p.maxOtherCpuPercent) {
    const highFor = o.otherCpuHighForMs ?? Infinity;
    if (highFor >= p.otherCpuGraceMs) return no(`other programs use ${Math.round(o.otherCpuPercent)}% CPU (limit ${p.maxOtherCpuPercent}%)`, 5000);
  }
  const why = o.idleMs === Infinity ? 'the desktop is away (locked, or no idle source)' : `the desktop has been idle for ${formatDuration(o.idleMs)}`;
  return go(why, null, windowLeft);
}

/** Whether `now` is inside the daily window, and ms until that changes. A window may wrap midnight. */
export function msUntilWindowEdge(w: { start: string; end: string }, now: Date): { inside: boolean; ms: number } {
  const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
  const start = minutes(w.start);
  const end = minutes(w.end);
  const nowMin = now.getHours() * 60 + now.getMinutes() + now.getSeconds() / 60 + now.getMilliseconds() / 60_000;
  const inside = start === end ? true : start < end ? nowMin >= start && nowMin < end : nowMin >= start || nowMin < end;
  if (start === end) return { inside: true, ms: 86_400_000 };
  const edge = inside ? end : start;
  let delta = edge - nowMin;
  if (delta <= 0) delta += 24 * 60;
  return { inside, ms: Math.ceil(delta * 60_000) };
}
