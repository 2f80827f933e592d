import { parseDuration, parseSize } from '../../../protocol/units.js';
import { formatWeekText, parseWeekText } from '../../../protocol/week-text.js';
import type { Preferences, PreferencesPatch } from './agent-api';

/** The limits form as typed: strings, so a half-typed value can be shown and explained. */
export interface LimitsDraft {
  when: 'idle' | 'always';
  idleAfter: string;
  scheduleOn: boolean;
  start: string;
  end: string;
  onBattery: boolean;
  /** Empty: no limit. */
  maxOtherCpu: string;
  cpus: string;
  memory: string;
  disk: string;
  whileHere: 'freeze' | 'gently';
  /** Empty: no cap of that kind. */
  hereCpus: string;
  hereCpuPercent: string;
  otherCpuGrace: string;
  /** Empty: no temperature cap. */
  maxTemp: string;
  /** A schedule per weekday as text; empty: none (the daily hours apply). */
  week: string;
  startPaused: boolean;
}

export type LimitsErrors = Partial<Record<keyof LimitsDraft, string>>;

export function draftFrom(p: Preferences): LimitsDraft {
  return {
    when: p.when,
    idleAfter: durationText(p.idleAfterMs),
    scheduleOn: p.schedule !== null,
    start: p.schedule?.start ?? '22:00',
    end: p.schedule?.end ?? '07:00',
    onBattery: p.onBattery,
    maxOtherCpu: p.maxOtherCpuPercent === null ? '' : String(p.maxOtherCpuPercent),
    cpus: p.cpus === null ? '' : String(p.cpus),
    memory: p.memoryBytes === null ? '' : sizeText(p.memoryBytes),
    disk: p.diskBytes === null ? '' : sizeText(p.diskBytes),
    whileHere: p.whileHere,
    hereCpus: p.hereLimits.cpus === null ? '' : String(p.hereLimits.cpus),
    hereCpuPercent: p.hereLimits.cpuPercent === null ? '' : String(p.hereLimits.cpuPercent),
    otherCpuGrace: durationText(p.otherCpuGraceMs),
    maxTemp: p.maxTemperatureC === null ? '' : String(p.maxTemperatureC),
    week: p.weekSchedule ? formatWeekText(p.weekSchedule) : '',
    startPaused: p.startPaused,
  };
}

/** A duration as the largest whole unit that states it exactly: 180000 → "3m" (parseDuration reads it back). */
export function durationText(ms: number): string {
  for (const [unit, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

/** A size as the largest whole unit that states it exactly: 2147483648 → "2g" (parseSize reads it back). */
export function sizeText(bytes: number): string {
  for (const [unit, n] of [['t', 1024 ** 4], ['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return String(bytes);
}

const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;

/** The change to send, or what is wrong with each field (named as the form labels it). */
export function patchFrom(d: LimitsDraft): { ok: true; patch: PreferencesPatch } | { ok: false; errors: LimitsErrors } {
  const errors: LimitsErrors = {};
  const patch: PreferencesPatch = { when: d.when, onBattery: d.onBattery };

  const idle = parseDuration(d.idleAfter.trim());
  if (typeof idle === 'string') errors.idleAfter = `Idle time: ${idle}`;
  else patch.idleAfter = `${idle}ms`;

  if (d.scheduleOn) {
    if (!HHMM.test(d.start)) errors.start = 'From: use a 24-hour time such as 22:00';
    if (!HHMM.test(d.end)) errors.end = 'Until: use a 24-hour time such as 07:00';
    if (HHMM.test(d.start) && d.start === d.end) errors.end = 'Until: must differ from the start';
    patch.schedule = { start: d.start, end: d.end };
  } else {
    patch.schedule = null;
  }

  const other = d.maxOtherCpu.trim();
  if (other === '') patch.maxOtherCpuPercent = null;
  else if (!/^\d+(\.\d+)?$/.test(other) || Number(other) < 1 || Number(other) > 100) errors.maxOtherCpu = 'Other programs\' CPU use: a percentage from 1 to 100, or empty for no limit';
  else patch.maxOtherCpuPercent = Number(other);

  const cpus = d.cpus.trim();
  if (cpus === '') patch.cpus = null;
  else if (!/^\d+(\.\d+)?$/.test(cpus) || Number(cpus) <= 0) errors.cpus = 'CPU cores: a positive number such as 2 or 0.5, or empty for all';
  else patch.cpus = Number(cpus);

  for (const key of ['memory', 'disk'] as const) {
    const v = d[key].trim();
    if (v === '') { patch[key] = null; continue; }
    const n = parseSize(v);
    if (typeof n === 'string' || n <= 0) errors[key] = `${key === 'memory' ? 'Memory' : 'Disk'}: ${typeof n === 'string' ? n : 'must be more than 0'}, or empty for no cap`;
    else patch[key] = v;
  }
  patch.whileHere = d.whileHere;
  patch.startPaused = d.startPaused;
  const num = (v: string, ok: (n: number) => boolean) => (/^\d+(\.\d+)?$/.test(v) && ok(Number(v)) ? Number(v) : null);
  const hc = d.hereCpus.trim();
  if (hc === '') patch.hereCpus = null;
  else if (num(hc, (n) => n > 0) === null) errors.hereCpus = 'CPU cores while you are here: a positive number such as 1 or 0.5, or empty';
  else patch.hereCpus = Number(hc);
  const hp = d.hereCpuPercent.trim();
  if (hp === '') patch.hereCpuPercent = null;
  else if (num(hp, (n) => n >= 1 && n <= 100) === null) errors.hereCpuPercent = 'Share of all CPUs while you are here: a percentage from 1 to 100, or empty';
  else patch.hereCpuPercent = Number(hp);
  const grace = parseDuration(d.otherCpuGrace.trim());
  if (typeof grace === 'string') errors.otherCpuGrace = `Grace period: ${grace}`;
  else patch.otherCpuGrace = `${grace}ms`;
  const t = d.maxTemp.trim();
  if (t === '') patch.maxTemperatureC = null;
  else if (num(t, (n) => n >= 30 && n <= 110) === null) errors.maxTemp = 'Temperature cap: degrees Celsius from 30 to 110, or empty for none';
  else patch.maxTemperatureC = Number(t);
  const w = d.week.trim();
  if (w === '') patch.weekSchedule = null;
  else {
    try { patch.weekSchedule = parseWeekText(w); } catch (e) { errors.week = `Schedule per weekday: ${(e as Error).message}`; }
  }
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, patch };
}
