import { WEEK_ORDER, WEEKDAYS, type TimeWindow, type WeekSchedule } from '../protocol/control-api.js';

const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether minute-of-day `m` of a day lies in `w` as seen from the day it starts on (the part after midnight is the next day's). */
function inStartDay(w: TimeWindow, m: number): boolean {
  const s = minutes(w.start);
  const e = minutes(w.end);
  if (s === e) return true;
  return s < e ? m >= s && m < e : m >= s;
}

/** Whether minute-of-day `m` lies in the after-midnight part of a window that started the day before. */
function inSpill(w: TimeWindow, m: number): boolean {
  const s = minutes(w.start);
  const e = minutes(w.end);
  return s > e && m < e;
}

/** Whether builds may run at `at` under a per-weekday schedule (a day not listed: any time). */
export function insideWeek(week: WeekSchedule, at: Date): boolean {
  const day = WEEKDAYS[at.getDay()]!;
  const yesterday = WEEKDAYS[(at.getDay() + 6) % 7]!;
  const m = at.getHours() * 60 + at.getMinutes();
  const today = week[day];
  if (today === undefined) return true;
  if (today.some((w) => inStartDay(w, m))) return true;
  return (week[yesterday] ?? []).some((w) => inSpill(w, m));
}

/**
 * Whether `now` is inside the week's schedule, and ms until that changes (looked for minute
 * by minute, at most a day ahead: the governor looks again then anyway).
 */
export function weekWindow(week: WeekSchedule, now: Date): { inside: boolean; ms: number } {
  const inside = insideWeek(week, now);
  const next = new Date(now);
  next.setSeconds(0, 0);
  for (let i = 1; i <= 24 * 60; i++) {
    next.setMinutes(next.getMinutes() + 1);
    if (insideWeek(week, next) !== inside) return { inside, ms: next.getTime() - now.getTime() };
  }
  return { inside, ms: 86_400_000 };
}

/** "mon 09:00–17:00; sat, sun any" for messages. */
export function describeWeek(week: WeekSchedule): string {
  return WEEK_ORDER.filter((d) => week[d] !== undefined)
    .map((d) => `${d} ${week[d]!.length ? week[d]!.map((w) => `${w.start}–${w.end}`).join(', ') : 'never'}`).join('; ') || 'any time';
}
