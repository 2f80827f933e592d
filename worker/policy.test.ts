import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PreferencesSchema } from '../protocol/control-api.js';
import { decide, msUntilWindowEdge } from './policy.js';

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
