import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PreferencesSchema } from '../protocol/control-api.js';
import { decide, gentleCap, HOLD_ABOVE_CAP_C, msUntilWindowEdge } from './policy.js';
import { insideWeek } from './week-schedule.js';

const prefs = (p: object = {}) => PreferencesSchema.parse(p);
const at = (hhmm: string) => { const d = new Date(2026, 10, 25); d.setHours(Number(hhmm.slice(0, 2)), Number(hhmm.slice(3)), 0, 0); return d; };
const obs = (o: object = {}) => ({ now: at('12:00'), idleMs: 0, onBattery: false, otherCpuPercent: null, ...o });

test('idle threshold: in use until idle long enough, with a recheck at the threshold', () => {
  const busy = decide(prefs({ idleAfterMs: 60_000 }), obs({ idleMs: 15_000 }));
  assert.equal(busy.run, false);
  assert.match(busy.reason, /in use \(idle 15s of 1m0s\)/);
  assert.equal(busy.recheckInMs, 45_000);
  assert.equal(decide(prefs({ idleAfterMs: 60_000 }), obs({ idleMs: 60_000 })).run, true);
  assert.equal(decide(prefs({ idleAfterMs: 60_000 }), obs({ idleMs: Infinity })).run, true);
  assert.equal(decide(prefs({ when: 'always' }), obs({ idleMs: 0 })).run, true);
});

test('schedule window, including one that wraps midnight', () => {
  const night = prefs({ when: 'always', schedule: { start: '22:00', end: '07:00' } });
  assert.equal(decide(night, obs({ now: at('23:30') })).run, true);
  assert.equal(decide(night, obs({ now: at('03:00') })).run, true);
  const day = decide(night, obs({ now: at('12:00') }));
  assert.equal(day.run, false);
  assert.match(day.reason, /outside the schedule \(22:00–07:00\)/);
  assert.equal(day.recheckInMs, 10 * 3_600_000);
  assert.deepEqual(msUntilWindowEdge({ start: '09:00', end: '17:00' }, at('16:30')), { inside: true, ms: 1_800_000 });
});

test('battery: no builds on battery unless allowed', () => {
  assert.match(decide(prefs({ when: 'always' }), obs({ onBattery: true })).reason, /on battery power/);
  assert.equal(decide(prefs({ when: 'always', onBattery: true }), obs({ onBattery: true })).run, true);
});

test('pause and snooze win over everything and say so; a snooze ends by itself', () => {
  const p = decide(prefs({ when: 'always', paused: true }), obs());
  assert.deepEqual([p.run, p.paused, p.reason], [false, true, 'paused by the volunteer']);
  const until = new Date(at('12:00').getTime() + 3_600_000).toISOString();
  const s = decide(prefs({ when: 'always', snoozeUntil: until }), obs());
  assert.deepEqual([s.run, s.paused, s.recheckInMs], [false, true, 3_600_000]);
  assert.match(s.reason, /snoozed for 1h0m more/);
  assert.equal(decide(prefs({ when: 'always', snoozeUntil: until }), obs({ now: new Date(Date.parse(until) + 1) })).run, true);
});

test('other programs using the CPU keep builds from starting', () => {
  const d = decide(prefs({ idleAfterMs: 0, maxOtherCpuPercent: 50 }), obs({ idleMs: 1000, otherCpuPercent: 80 }));
  assert.match(d.reason, /other programs use 80% CPU \(limit 50%\)/);
  assert.equal(decide(prefs({ idleAfterMs: 0, maxOtherCpuPercent: 50 }), obs({ idleMs: 1000, otherCpuPercent: 20 })).run, true);
});

test('keep going gently: while here, builds run under the tighter of N cores and P% (freeze stays the default)', () => {
  const here = obs({ idleMs: 1000 });
  assert.deepEqual(pick(decide(prefs({ idleAfterMs: 60_000 }), here)), [false, true, null]);
  const g = decide(prefs({ idleAfterMs: 60_000, whileHere: 'gently', hereLimits: { cpus: 2, cpuPercent: 25 } }), { ...here, cpuCount: 4 });
  assert.deepEqual(pick(g), [true, false, 1]);
  assert.match(g.reason, /keeping going gently .*at most 1 CPU/);
  assert.equal(g.recheckInMs, 59_000, 'looks again when the volunteer would count as away');
  assert.equal(gentleCap(prefs({ hereLimits: { cpus: null, cpuPercent: null } }), 8), 1, 'neither set: one core');
  // Away: the away caps (the builder's and `cpus`) only.
  assert.deepEqual(pick(decide(prefs({ idleAfterMs: 60_000, whileHere: 'gently' }), obs({ idleMs: 120_000 }))), [true, false, null]);
  // `when: always` with gently still caps while here.
  assert.deepEqual(pick(decide(prefs({ when: 'always', whileHere: 'gently', hereLimits: { cpus: 0.5, cpuPercent: null } }), here)), [true, false, 0.5]);
});

test('other programs\' CPU use holds builds only after the grace period', () => {
  const p = prefs({ idleAfterMs: 0, maxOtherCpuPercent: 50, otherCpuGraceMs: 30_000 });
  assert.equal(decide(p, obs({ idleMs: 1000, otherCpuPercent: 90, otherCpuHighForMs: 5000 })).run, true, 'a short spike does not');
  assert.equal(decide(p, obs({ idleMs: 1000, otherCpuPercent: 90, otherCpuHighForMs: 30_000 })).run, false);
});

test('temperature cap: throttle at the cap, hold 5 °C above it', () => {
  const p = prefs({ when: 'always', maxTemperatureC: 80, hereLimits: { cpus: 1, cpuPercent: null } });
  assert.deepEqual(pick(decide(p, obs({ temperatureC: 70 }))), [true, false, null]);
  const warm = decide(p, obs({ temperatureC: 81 }));
  assert.deepEqual(pick(warm), [true, false, 1]);
  assert.match(warm.reason, /throttled to 1 CPU\(s\): 81 °C \(cap 80 °C\)/);
  const hot = decide(p, obs({ temperatureC: HOLD_ABOVE_CAP_C + 80 }));
  assert.deepEqual(pick(hot), [false, true, null]);
  assert.match(hot.reason, /too hot: 85 °C/);
  assert.deepEqual(pick(decide(p, obs({ temperatureC: null }))), [true, false, null], 'no sensor: no cap');
});

test('finish the current build, then pause: no new builds, the running one is not frozen', () => {
  const d = decide(prefs({ when: 'always', pauseAfterCurrent: true }), obs());
  assert.deepEqual(pick(d), [false, false, null]);
  assert.match(d.reason, /^finishing the current build, then pausing/);
  assert.equal(decide(prefs({ when: 'always', pauseAfterCurrent: true, paused: true }), obs()).freeze, true, 'once paused it freezes like any pause');
});

test('a schedule per weekday: windows per day, a day left out is any time, an empty day is never, wrapping windows spill into the next day', () => {
  // 2026-11-25 is a Wednesday.
  const week = { wed: [{ start: '18:00', end: '23:00' }], thu: [], fri: [{ start: '22:00', end: '06:00' }] };
  const p = prefs({ when: 'always', weekSchedule: week });
  const wed = (hhmm: string) => at(hhmm);
  const day = (offset: number, hhmm: string) => { const d = at(hhmm); d.setDate(d.getDate() + offset); return d; };
  assert.equal(decide(p, obs({ now: wed('12:00') })).run, false);
  assert.match(decide(p, obs({ now: wed('12:00') })).reason, /outside the schedule \(wed 18:00–23:00; thu never; fri 22:00–06:00\)/);
  assert.equal(decide(p, obs({ now: wed('12:00') })).recheckInMs, 6 * 3_600_000);
  assert.equal(decide(p, obs({ now: wed('19:00') })).run, true);
  assert.equal(decide(p, obs({ now: day(1, '19:00') })).run, false, 'thursday: never');
  assert.equal(decide(p, obs({ now: day(2, '23:00') })).run, true, 'friday night');
  assert.equal(decide(p, obs({ now: day(3, '05:00') })).run, true, 'saturday morning: friday\'s window spills over');
  assert.equal(decide(p, obs({ now: day(3, '12:00') })).run, true, 'saturday: not listed, any time');
  assert.equal(insideWeek(week, day(-1, '03:00')), true, 'tuesday: any time');
});

const pick = (d: { run: boolean; freeze: boolean; cpuCap: number | null }) => [d.run, d.freeze, d.cpuCap];
