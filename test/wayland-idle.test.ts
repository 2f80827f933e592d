import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { BuildView } from '../protocol/api.js';
import { appIdleSource } from '../app/idle-report.js';
import { startWorker } from '../worker/agent.js';
import { detectIdleSource } from '../worker/idle/detect-idle.js';
import type { IdleSource } from '../worker/idle/idle-source.js';
import { parseHidIdleTime } from '../worker/idle/macos-idle.js';
import { planIdleSources } from '../worker/idle/session.js';
import { parseLastInputLine } from '../worker/idle/windows-idle.js';
import { cleanup, tempDir, testMaster, until, whenSteady } from './helpers/cluster.js';
import { startMutter, startSway, type Compositor } from './helpers/wayland.js';
import { startXvfb } from './helpers/xvfb.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the session decides the candidates: never X11 inside a Wayland session, even with DISPLAY set', () => {
  const gnome = planIdleSources({ XDG_SESSION_TYPE: 'wayland', XDG_CURRENT_DESKTOP: 'ubuntu:GNOME', WAYLAND_DISPLAY: 'wayland-0', DISPLAY: ':0' }, 'linux');
  assert.deepEqual(gnome.candidates, ['mutter', 'wayland', 'logind']);
  assert.match(gnome.why, /Wayland session \(XDG_SESSION_TYPE=wayland, ubuntu:gnome\); not X11 although DISPLAY=:0 is set/);
  const kde = planIdleSources({ XDG_SESSION_TYPE: 'wayland', XDG_CURRENT_DESKTOP: 'KDE', WAYLAND_DISPLAY: 'wayland-0', DISPLAY: ':1' }, 'linux');
  assert.deepEqual(kde.candidates, ['wayland', 'mutter', 'logind']);
  // No XDG_SESSION_TYPE (a compositor started by hand): WAYLAND_DISPLAY alone makes it Wayland.
  const sway = planIdleSources({ WAYLAND_DISPLAY: 'wayland-1', DISPLAY: ':0', XDG_CURRENT_DESKTOP: 'sway' }, 'linux');
  assert.equal(sway.session, 'wayland');
  assert.ok(!sway.candidates.includes('x11'));
  assert.match(sway.why, /WAYLAND_DISPLAY=wayland-1/);
  for (const p of [gnome, kde, sway]) assert.ok(!p.candidates.includes('x11'), p.why);
  // XDG_SESSION_TYPE=x11 is what logind says; a stray WAYLAND_DISPLAY (a nested compositor) does not override it.
  assert.deepEqual(planIdleSources({ XDG_SESSION_TYPE: 'x11', DISPLAY: ':0', WAYLAND_DISPLAY: 'wayland-9' }, 'linux').candidates, ['x11', 'logind']);
  assert.deepEqual(planIdleSources({ DISPLAY: ':0' }, 'linux').candidates, ['x11', 'logind']);
  assert.equal(planIdleSources({}, 'linux').session, 'no-graphical-session');
  assert.deepEqual(planIdleSources({ WAYLAND_DISPLAY: 'w' }, 'darwin').candidates, ['macos']);
  assert.deepEqual(planIdleSources({}, 'win32').candidates, ['windows']);
  // The desktop app feeds powerMonitor only where it is right; in a Wayland session the agent's own source decides.
  assert.equal(appIdleSource('linux', { XDG_SESSION_TYPE: 'wayland', DISPLAY: ':0', WAYLAND_DISPLAY: 'wayland-0' }), 'auto');
  assert.equal(appIdleSource('linux', { XDG_SESSION_TYPE: 'x11', DISPLAY: ':0' }), 'app');
  assert.equal(appIdleSource('darwin', { WAYLAND_DISPLAY: 'x' }), 'app');
  assert.equal(appIdleSource('win32', {}), 'app');
});

test('macOS HIDIdleTime and Windows GetLastInputInfo readings are parsed, and nonsense is refused', () => {
  const ioreg = '+-o IOHIDSystem  <class IOHIDSystem, id 0x100000483, registered, matched, active, busy 0 (0 ms), retain 20>\n'
    + '    {\n      "HIDIdleTime" = 2500000000\n      "HIDParameters" = {"HIDClickTime"=500000000}\n    }\n';
  assert.equal(parseHidIdleTime(ioreg), 2500);
  assert.equal(parseHidIdleTime('  "HIDIdleTime" = <0094357700000000>'), 2000, 'little-endian data form (2,000,000,000 ns)');
  assert.throws(() => parseHidIdleTime('+-o IOHIDSystem\n'), /ioreg printed no HIDIdleTime/);
  assert.throws(() => parseHidIdleTime('"HIDIdleTime" = <0011223344556677889900>'), /not a 64-bit number/);
  assert.equal(parseLastInputLine('1000500 1000000'), 500);
  assert.equal(parseLastInputLine('200 4294967196\r'), 300, 'the 49.7-day tick count wrap');
  assert.throws(() => parseLastInputLine('error 5'), /GetLastInputInfo: unexpected line "error 5"/);
  assert.throws(() => parseLastInputLine('99999999999 1'), /not two 32-bit tick counts/);
});

/** The source reports idle, then input at once (an event), then idle again. */
async function idleActiveIdle(t: { diagnostic(s: string): void }, src: IdleSource, c: Compositor, idleAtLeastMs: number): Promise<void> {
  let events = 0;
  assert.equal(src.onInput(() => { events++; }), true, 'an event-driven source');
  await until('idle', async () => (await src.read()).idleMs >= idleAtLeastMs, 10_000);
  const before = events;
  await c.input();
  await until('the input event', () => events > before, 5000);
  assert.ok((await src.read()).idleMs < idleAtLeastMs, 'input: no longer idle');
  await until('idle again', async () => (await src.read()).idleMs >= idleAtLeastMs, 10_000);
  t.diagnostic(`${src.name}: idle, input event, idle again`);
}

test('sway (wlroots, headless): swayidle reports idle, then input from wtype at once, then idle again; auto picks it over a working X display', async (t) => {
  const sway = await startSway();
  t.after(() => sway.close());
  const x = await startXvfb();
  t.after(() => x.close());
  // A Wayland session whose DISPLAY points at a live X server: X11 would answer, and must not be used.
  const env = { ...process.env, ...sway.env, DISPLAY: x.display, XDG_CURRENT_DESKTOP: 'sway', XDG_SESSION_TYPE: '' };
  const src = await detectIdleSource('auto', env);
  t.after(() => src.close());
  assert.equal(src.name, 'wayland', src.why);
  assert.match(src.why, /Wayland session \(WAYLAND_DISPLAY=wayland-\d+, sway\); not X11 although DISPLAY=:\d+ is set.*using wayland/);
  await idleActiveIdle(t, src, sway, 1000);
});

test('sway: a window that inhibits idle (a video, a presentation: sway inhibit_idle) holds the source "in use" until it lets go', async (t) => {
  const sway = await startSway();
  t.after(() => sway.close());
  const src = await detectIdleSource('wayland', { ...process.env, ...sway.env });
  t.after(() => src.close());
  let events = 0;
  src.onInput(() => { events++; });
  // A real Wayland client window (foot), told by the compositor to inhibit idle while open.
  const foot = spawn('foot', ['-o', 'font=monospace:size=8', 'sleep', '600'], { env: { ...process.env, ...sway.env }, stdio: 'ignore' });
  t.after(() => foot.kill());
  await until('the foot window', () => sway.swaymsg('-t', 'get_tree').includes('"app_id": "foot"'), 15_000);
  // The volunteer is at the desk (idle, then input), and starts the video: it inhibits idle.
  await until('idle', async () => (await src.read()).idleMs >= 1000, 10_000);
  await sway.input();
  await until('the input event', () => events > 0, 5000);
  assert.match(sway.swaymsg('[app_id=foot] inhibit_idle open'), /"success": true/);
  // Without the inhibitor this is idle after 1 s (the next step shows it); with it, it stays in use.
  await sleep(3000);
  assert.equal((await src.read()).idleMs, 0, 'inhibited: in use');
  assert.match(sway.swaymsg('[app_id=foot] inhibit_idle none'), /"success": true/);
  await until('idle once the inhibitor is gone', async () => (await src.read()).idleMs >= 1000, 10_000);
});

test('asked-for sources that cannot work fail with the reason', async () => {
  const bare = { PATH: process.env.PATH, XDG_RUNTIME_DIR: tempDir('rt'), DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent/bus' };
  await assert.rejects(detectIdleSource('wayland', { PATH: process.env.PATH }), /--idle-source wayland: no WAYLAND_DISPLAY/);
  await assert.rejects(detectIdleSource('wayland', { ...bare, WAYLAND_DISPLAY: 'wayland-7' }), /--idle-source wayland: no Wayland socket at .*wayland-7/);
  await assert.rejects(detectIdleSource('mutter', bare), /--idle-source mutter: Mutter: /);
  await assert.rejects(detectIdleSource('macos', bare), /--idle-source macos: not macOS/);
  await assert.rejects(detectIdleSource('windows', bare), /--idle-source windows: not Windows/);
  // A Wayland session where nothing works: builds wait (in use), never "always idle".
  const src = await detectIdleSource('auto', { ...bare, XDG_SESSION_TYPE: 'wayland', WAYLAND_DISPLAY: 'wayland-7', DISPLAY: ':0', DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/nonexistent/bus' });
  assert.equal(src.name, 'unavailable');
  assert.match(src.why, /no idle source works \(wayland: no Wayland socket.*; mutter: Mutter: .*; logind: .*\); builds wait/);
  assert.equal((await src.read()).idleMs, 0);
});

test('Mutter (headless, private session bus): IdleMonitor idle time, a user-active watch fired by RemoteDesktop input, idle again', async (t) => {
  const mutter = await startMutter();
  t.after(() => mutter.close());
  const env = { ...process.env, ...mutter.env, DISPLAY: ':0' };
  const src = await detectIdleSource('auto', env);
  t.after(() => src.close());
  assert.equal(src.name, 'mutter', src.why);
  assert.match(src.why, /Wayland session \(XDG_SESSION_TYPE=wayland, gnome\); not X11 although DISPLAY=:0 is set \(that is XWayland, blind to input in Wayland windows\); using mutter: org\.gnome\.Mutter\.IdleMonitor/);
  await idleActiveIdle(t, src, mutter, 500);
});

const COUNTER = `
requires: { executor: host }
steps:
  - run: "i=0; while [ $i -lt 40 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo all done"
limits: { time: 2m }
`;

/** The volunteer-idle test on a compositor: waits for idle, freezes on input, thaws after the idle time. */
async function idleGatedBuild(t: { after(fn: () => unknown): void; diagnostic(s: string): void }, c: Compositor, source: string, desktop: string): Promise<void> {
  const m = await testMaster({ counter: COUNTER });
  const dir = tempDir('w');
  const keys = ['XDG_RUNTIME_DIR', 'WAYLAND_DISPLAY', 'XDG_CURRENT_DESKTOP', 'XDG_SESSION_TYPE', 'DBUS_SESSION_BUS_ADDRESS', 'DISPLAY'];
  const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
  // startWorker reads the session from process.env, as `crowdbake worker` does; DISPLAY is set too (XWayland).
  Object.assign(process.env, { XDG_CURRENT_DESKTOP: desktop, DISPLAY: ':0' }, c.env);
  // Someone is at the desk from before the worker starts until the build is seen waiting: the
  // compositor reports idle after 1 s, and the worker's start can outlast that.
  let atDesk = true;
  const typing = (async () => { while (atDesk) { await c.input(); await sleep(200); } })();
  const w = await startWorker({
    master: m.url, token: await m.token('desk'), dataDir: dir, executor: 'host', labels: [], log: () => undefined,
    idleSource: 'auto', preferences: { when: 'idle', idleAfterMs: 1500 },
  }).finally(() => { for (const k of keys) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; } });
  t.after(async () => { atDesk = false; await typing; await w.close(); await m.close(); cleanup(dir); });
  const build = () => m.get<BuildView>(`/api/v1/builds/${id}`);
  const log = () => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  const ticks = async () => (await log()).match(/^tick \d+$/gm)?.length ?? 0;

  assert.equal(w.status().idleSource.name, source, w.status().idleSource.why);
  await until('the worker to see the desk in use', () => /desktop is in use/.test(w.status().reason), 20_000);
  const id = await m.force('counter');
  await sleep(1000);
  assert.equal((await build()).state, 'queued', 'in use: the build waits');
  atDesk = false;
  await typing;
  await until('the build to run', async () => (await ticks()) >= 3, 20_000);

  const touched = Date.now();
  await c.input();
  await until('frozen on the master', async () => (await build()).state === 'frozen', 20_000);
  t.diagnostic(`${source}: input -> master shows frozen: ${Date.now() - touched} ms`);
  assert.equal(w.status().state, 'frozen');
  // Once what was in flight when it froze has landed, nothing moves while they keep typing.
  const before = await whenSteady('the frozen build\'s log', ticks, () => c.input());
  for (let i = 0; i < 4; i++) { await c.input(); await sleep(300); }
  assert.equal(await ticks(), before, 'no progress while frozen');

  const done = await m.waitFinished(id, 60_000);
  assert.equal(done.result, 'success', await log());
  assert.match(await log(), /all done/);
}

test('idle-gated build under sway: waits for idle, freezes on wtype input, thaws after the idle time', async (t) => {
  const sway = await startSway();
  t.after(() => sway.close());
  await idleGatedBuild(t, sway, 'wayland', 'sway');
});

test('idle-gated build under Mutter: waits for idle, freezes on RemoteDesktop input, thaws after the idle time', async (t) => {
  const mutter = await startMutter();
  t.after(() => mutter.close());
  await idleGatedBuild(t, mutter, 'mutter', 'GNOME');
});
