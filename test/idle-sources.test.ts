import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { detectIdleSource } from '../worker/idle/detect-idle.js';
import { LogindIdleSource } from '../worker/idle/logind-idle.js';
import { ReportedIdleSource } from '../worker/idle/idle-source.js';
import { ROOT } from './helpers/cluster.js';
import { startXvfb } from './helpers/xvfb.js';

/** A private D-Bus daemon with the FAKE logind of test/fixtures on it (no systemd here). */
async function fakeLogind() {
  const daemon = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const address = await new Promise<string>((ok) => createInterface({ input: daemon.stdout! }).once('line', ok));
  const fake = spawn('/usr/bin/python3', [join(ROOT, 'test/fixtures/fake-logind.py'), address], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: fake.stdout! });
  const next = () => new Promise<string>((ok) => lines.once('line', ok));
  assert.equal(await next(), 'ready');
  return {
    env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address, DISPLAY: '' },
    say: async (cmd: string) => { fake.stdin!.write(`${cmd}\n`); assert.equal(await next(), 'ok'); },
    close: () => { fake.kill(); daemon.kill(); },
  };
}

test('logind: idle hint, idle-since time and lock are read; auto picks logind without X', async (t) => {
  const l = await fakeLogind();
  t.after(() => l.close());
  const saved = process.env.DBUS_SYSTEM_BUS_ADDRESS;
  process.env.DBUS_SYSTEM_BUS_ADDRESS = l.env.DBUS_SYSTEM_BUS_ADDRESS;
  t.after(() => { process.env.DBUS_SYSTEM_BUS_ADDRESS = saved; });
  const src = await detectIdleSource('auto', l.env);
  assert.equal(src.name, 'logind');
  assert.match(src.why, /no usable X display .*logind session auto answers/);
  assert.deepEqual(await src.read(), { idleMs: 0, locked: false });
  await l.say(`idle ${(Date.now() - 90_000) * 1000}`);
  const idle = await src.read();
  assert.ok(idle.idleMs >= 90_000 && idle.idleMs < 100_000, `idle ${idle.idleMs}`);
  await l.say('lock');
  assert.deepEqual(await src.read(), { idleMs: Infinity, locked: true }, 'a locked screen counts as away');
  await l.say('unlock');
  await l.say('active');
  assert.equal((await src.read()).idleMs, 0);
  assert.equal(src.onInput(() => undefined), false, 'logind has no input events: the agent polls');
});

test('auto with neither X nor logind falls back to none and says why; asking for a missing source fails clearly', async () => {
  const env = { ...process.env, DISPLAY: '', DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/nonexistent/bus' };
  const src = await detectIdleSource('auto', env);
  assert.equal(src.name, 'none');
  assert.match(src.why, /no usable X display \(no DISPLAY\) and no logind session .*always idle/);
  await assert.rejects(detectIdleSource('x11', env), /--idle-source x11: no DISPLAY/);
  await assert.rejects(detectIdleSource('logind', env), /--idle-source logind: logind:/);
  assert.ok(new LogindIdleSource('c2', 'x'));
});

test('x11: idle time grows without input and drops to zero on xdotool input; input events arrive at once', async (t) => {
  const x = await startXvfb();
  t.after(() => x.close());
  const src = await detectIdleSource('auto', { ...process.env, DISPLAY: x.display });
  t.after(() => src.close());
  assert.equal(src.name, 'x11');
  assert.match(src.why, /^auto: X display :\d+; using x11: X display :\d+ answers XScreenSaver queries$/);
  let events = 0;
  assert.equal(src.onInput(() => { events++; }), true);
  await new Promise((r) => setTimeout(r, 400));
  const before = (await src.read()).idleMs;
  assert.ok(before >= 300, `idle ${before}`);
  x.input();
  assert.ok((await src.read()).idleMs < 200);
  const end = Date.now() + 2000;
  while (events === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  assert.ok(events > 0, 'an XInput2 event was seen');
});

test('the app source: reports from powerMonitor, lock/suspend count as away, silence counts as in use', async () => {
  const src = new ReportedIdleSource();
  assert.equal((await src.read()).idleMs, 0, 'no report yet: in use');
  let inputs = 0;
  src.onInput(() => { inputs++; });
  src.report({ idleMs: 120_000, locked: false, suspended: false, onBattery: true });
  const r = await src.read();
  assert.ok(r.idleMs >= 120_000);
  assert.equal(r.onBattery, true);
  src.report({ idleMs: 0, locked: false, suspended: false });
  assert.equal(inputs, 1, 'a drop in idle time is input');
  src.report({ idleMs: 5, locked: true, suspended: false });
  assert.equal((await src.read()).idleMs, Infinity);
});
