import type { Preferences } from '../protocol/control-api.js';
import { formatDuration } from '../protocol/units.js';

/** What the agent observes at one moment. */
export interface Observations {
  now: Date;
  /** Milliseconds without input; Infinity when away (locked, suspended, no idle source). */
  idleMs: number;
  onBattery: boolean;
  /** CPU used by other programs, % of all CPUs; null when not measured. */
  otherCpuPercent: number | null;
}

export interface Decision {
  /** Builds may run (and new ones start); otherwise running builds are frozen. */
  run: boolean;
  /** Paused or snoozed by the volunteer (as opposed to waiting for idle, schedule, power). */
  paused: boolean;
  reason: string;
  /** When to look again even if nothing happens (e.g. the idle threshold or a window edge), ms from now. */
  recheckInMs: number | null;
}

/**
 * The volunteer's rules, as a pure function of preferences and observations. Order matters:
 * the first rule that says no gives the reason shown in `crowdbake status`.
 */
export function decide(p: Preferences, o: Observations): Decision {
  const no = (reason: string, recheckInMs: number | null = null, paused = false): Decision => ({ run: false, paused, reason, recheckInMs });
  if (p.paused) return no('paused by the volunteer', null, true);
  if (p.snoozeUntil) {
    const left = Date.parse(p.snoozeUntil) - o.now.getTime();
    if (left > 0) return no(`snoozed for ${formatDuration(left)} more`, left, true);
  }
  if (p.schedule) {
    const toEdge = msUntilWindowEdge(p.schedule, o.now);
    if (!toEdge.inside) return no(`outside the schedule (${p.schedule.start}–${p.schedule.end})`, toEdge.ms);
  }
  if (o.onBattery && !p.onBattery) return no('on battery power');
  const windowLeft = p.schedule ? msUntilWindowEdge(p.schedule, o.now).ms : null;
  if (p.when === 'always') return { run: true, paused: false, reason: 'builds run whenever work is assigned', recheckInMs: windowLeft };
  if (o.idleMs < p.idleAfterMs) {
    return no(`the desktop is in use (idle ${formatDuration(o.idleMs)} of ${formatDuration(p.idleAfterMs)})`, p.idleAfterMs - o.idleMs);
  }
  if (p.maxOtherCpuPercent !== null && o.otherCpuPercent !== null && o.otherCpuPercent > p.maxOtherCpuPercent) {
    return no(`other programs use ${Math.round(o.otherCpuPercent)}% CPU (limit ${p.maxOtherCpuPercent}%)`, 5000);
  }
  const why = o.idleMs === Infinity ? 'the desktop is away (locked, or no idle source)' : `the desktop has been idle for ${formatDuration(o.idleMs)}`;
  return { run: true, paused: false, reason: why, recheckInMs: windowLeft };
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
