// The desktop app's wiring (desktop.ts) against a named STAND-IN of the electron module
// (test/helpers/electron-stand-in.ts; the Electron binary cannot be downloaded here), with a
// real master, a real `crowdbake worker` process and the real IPC router: first run, joining
// from a crowdbake: link, tray actions reaching the agent, the worker restarted when it dies,
// master mode, closing to the tray and quitting gracefully.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import type { AppInfo, ProjectView } from '../protocol/app-ipc.js';
import type { AgentStatus } from '../protocol/control-api.js';
import { CLI, cleanup, tempDir, testMaster, until, writeBuilder } from '../test/helpers/cluster.js';
import { ElectronStandIn } from '../test/helpers/electron-stand-in.js';
import { APP_PAGE } from './app-page.js';
import { startDesktop, type DesktopOptions } from './desktop.js';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));
const options = (dir: string, argv: string[] = []): DesktopOptions => ({
  argv, env: { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, 'share') }, execPath: process.execPath, cli: CLI,
  rendererDir: here('../renderer/'), preload: here('./preload.cjs'), trayIcons: here('../../assets/tray/'), appIcon: here('../../assets/icon.png'),
  workerDataDir: join(dir, 'worker'), restartDelayMs: 200, pollMs: 200, log: () => undefined,
});
const invite = (dataDir: string) => {
  const made = spawnSync(process.execPath, [CLI, 'invite', 'create', '--data', dataDir, '--uses', '3'], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  return made.stdout.trim().split('\n').at(-1)!;
};
const value = <T>(a: { ok: boolean; value?: unknown; error?: string }): T => { assert.ok(a.ok, a.error); return a.value as T; };

test('first run → join from a crowdbake: link → the worker runs; tray actions reach the agent; a dead worker is restarted; close keeps the tray; quit stops the worker', { timeout: 120_000 }, async (t) => {
  const dir = tempDir('desk');
  const m = await testMaster({ ticker: 'requires: { executor: host }\nsteps:\n  - run: "sleep 1; echo done"\n' });
  const e = new ElectronStandIn(join(dir, 'userdata'));
  const app = startDesktop(e, options(dir));
  t.after(async () => { await app.worker().stop('requeue'); await m.close(); cleanup(dir); });
  await app.ready;

  // Started with no configuration: the window shows the app's own page, the first-run screen.
  assert.equal(e.windows.length, 1);
  assert.equal(e.windows[0]!.url, APP_PAGE);
  assert.equal(e.windows[0]!.visible, true);
  assert.deepEqual(e.protocolClients.map((c) => c.scheme), ['crowdbake'], 'the crowdbake: scheme is registered');
  const info = value<AppInfo>(await e.invoke('app:info'));
  assert.deepEqual([info.firstRun, info.runsMaster, info.dashboardUrl, info.settings.notifications], [true, false, null, false]);
  assert.equal(info.defaults.idleAfterMs, 180_000, 'the defaults are shown before anything starts');
  assert.equal(app.worker().running, false, 'nothing runs before the volunteer joins');
  assert.equal(app.trayState(), 'offline');
  // The page is served from the app's files, marked for app mode; nothing outside them.
  const page = await e.protocolHandlers.get('crowdbake-app')!(new Request(APP_PAGE));
  assert.match(await page.text(), /<meta name="crowdbake-mode" content="app">/);
  assert.match(page.headers.get('content-security-policy') ?? '', /connect-src 'none'/);
  assert.equal((await e.protocolHandlers.get('crowdbake-app')!(new Request('crowdbake-app://app/%2e%2e/%2e%2e/package.json'))).status, 404);

  // IPC: only the app's page is answered; bad arguments and bad links get the reason.
  assert.match((await e.invoke('app:info', undefined, 'https://evil.example/')).error ?? '', /IPC refused for https:\/\/evil\.example\//);
  assert.match((await e.invoke('no:such')).error ?? '', /no IPC channel no:such/);
  assert.match((await e.invoke('agent:history', { limit: 'all' })).error ?? '', /agent:history: limit: /);
  assert.match((await e.invoke('projects:join', { link: 'https://not-a-join-link.example/' })).error ?? '', /crowdbake:/);
  assert.match((await e.invoke('projects:join', { link: 'crowdbake://join?master=http://127.0.0.1:1&code=AAAAAAAAAAAAAAAAAAAA' })).error ?? '', /cannot reach the master at http:\/\/127\.0\.0\.1:1/);
  assert.deepEqual(value<ProjectView[]>(await e.invoke('projects:list')), [], 'a refused join wrote nothing');
  // A page that tries paths or floods: names are looked up among the joined projects only, sizes are bounded.
  assert.match((await e.invoke('projects:leave', '../volunteer')).error ?? '', /no joined project "\.\.\/volunteer"/);
  assert.match((await e.invoke('projects:share', { name: 'x', share: 1, extra: true })).error ?? '', /projects:share: .*extra/);
  assert.match((await e.invoke('agent:snooze', 'x'.repeat(100))).error ?? '', /agent:snooze: /);
  assert.match((await e.invoke('app:settings', { masterConfigDir: 7 })).error ?? '', /app:settings: masterConfigDir/);
  // The master's folder (whose builder files it runs) is set only by main's folder dialog, never by the window.
  const planted = await e.invoke('app:settings', { notifications: true, masterConfigDir: '/home/volunteer/Downloads/evil-config' });
  assert.match(planted.error ?? '', /app:settings: masterConfigDir: is set only through the folder dialog/);
  assert.deepEqual([value<AppInfo>(await e.invoke('app:info')).settings.masterConfigDir, value<AppInfo>(await e.invoke('app:info')).settings.notifications], [null, false], 'nothing of the refused change was applied');

  // A crowdbake: link opened while the app runs (a second instance) waits in the window for the volunteer.
  const link = invite(m.dataDir);
  e.emitApp('second-instance', ['/usr/bin/crowdbake-app', link]);
  assert.equal(value<AppInfo>(await e.invoke('app:info')).pendingJoinLink, link);
  const joined = value<{ project: string; worker: string }>(await e.invoke('projects:join', { link, displayName: 'Ada' }));
  assert.ok(joined.project);
  await until('the worker started and connected', async () => {
    const s = value<AgentStatus | { offline: string }>(await e.invoke('agent:status'));
    return 'state' in s && s.master.connected;
  }, 60_000);
  assert.equal(value<AppInfo>(await e.invoke('app:info')).firstRun, false);
  assert.equal(value<AppInfo>(await e.invoke('app:info')).pendingJoinLink, null);
  assert.deepEqual(value<ProjectView[]>(await e.invoke('projects:list')).map((p) => [p.name, p.state]), [[joined.project, 'connected']]);
  // macOS hands a clicked link to the running app as open-url.
  const other = 'crowdbake://join?master=http://farm.example:8585&code=BBBBBBBBBBBBBBBBBBBB';
  e.emitApp('open-url', other);
  assert.equal(value<AppInfo>(await e.invoke('app:info')).pendingJoinLink, other);
  const again = await e.invoke('projects:join', { link: invite(m.dataDir) });
  assert.match(again.error ?? '', /already joined/);

  // The tray follows the agent; its menu drives it.
  await until('the tray follows the agent', () => app.trayState() !== 'offline' && !e.tray.image.endsWith('tray-offline.png'));
  e.tray.click('Pause builds');
  await until('paused', async () => (value<AgentStatus>(await e.invoke('agent:status'))).state === 'paused');
  await until('tray paused', () => e.tray.image.endsWith('tray-paused.png'));
  e.tray.click('Resume builds');
  await until('resumed', async () => (value<AgentStatus>(await e.invoke('agent:status'))).state !== 'paused');
  e.tray.click('Notifications');
  assert.equal(value<AppInfo>(await e.invoke('app:info')).settings.notifications, true);
  e.tray.click('Start at login');
  assert.equal(e.loginItem.openAtLogin, true);

  // The worker dies: it is started again, and the agent answers again.
  const pid = app.worker().pid!;
  process.kill(pid, 'SIGKILL');
  await until('restarted', () => app.worker().starts === 2 && app.worker().pid !== pid);
  await until('agent back', async () => { const s = value<AgentStatus | { offline: string }>(await e.invoke('agent:status')); return 'state' in s && s.master.connected; }, 60_000);

  // The project refuses this computer (its token revoked): the tray needs attention, and says so (notifications are on).
  const revoked = spawnSync(process.execPath, [CLI, 'token', 'revoke', joined.worker, '--data', m.dataDir], { encoding: 'utf8' });
  assert.equal(revoked.status, 0, revoked.stderr);
  await until('needs attention', () => app.trayState() === 'attention', 30_000);
  await until('attention icon', () => e.tray.image.endsWith('tray-attention.png'));
  assert.match(e.tray.tooltip, new RegExp(`Needs your attention — The project ${joined.project} refused this computer`));
  assert.deepEqual(e.notifications.map((n) => n.body), [`The project ${joined.project} refused this computer (banned, or its token revoked); see Projects.`]);

  // Closing the window keeps the app (in the tray); quitting stops the worker, then quits.
  assert.equal(e.windows[0]!.close(), false);
  assert.equal(e.windows[0]!.visible, false);
  e.tray.click('Open Crowdbake');
  assert.equal(e.windows[0]!.visible, true);
  assert.equal(e.windows.length, 1, 'the same window again');
  assert.equal(e.windows[0]!.navigates('https://evil.example/'), false, 'the window stays on its page');
  const worker = app.worker().pid!;
  e.tray.click('Quit Crowdbake');
  await until('quit', () => e.quitted);
  assert.equal(app.worker().running, false);
  assert.throws(() => process.kill(worker, 0), 'the worker process is gone');
});

test('master mode: the app runs a master, its dashboard is one more window; the tray offers it', { timeout: 60_000 }, async (t) => {
  const dir = tempDir('desk-master');
  const config = join(dir, 'farm');
  mkdirSync(join(config, 'builders'), { recursive: true });
  writeBuilder(config, 'hello', 'requires: { executor: host }\nsteps:\n  - run: echo hi\n');
  const e = new ElectronStandIn(join(dir, 'userdata'));
  const app = startDesktop(e, options(dir, ['--start-master', config, '--data', join(dir, 'master'), '--listen', '127.0.0.1:0']));
  t.after(async () => { e.app.quit(); await until('quit', () => e.quitted); cleanup(dir); });
  await app.ready;
  const info = value<AppInfo>(await e.invoke('app:info'));
  assert.equal(info.runsMaster, true);
  assert.equal(info.firstRun, false, 'a maintainer running a master skips the first-run screen');
  assert.match(info.dashboardUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const builders = await (await fetch(`${info.dashboardUrl}api/v1/builders`)).json() as { name: string }[];
  assert.deepEqual(builders.map((b) => b.name), ['hello']);
  e.tray.click('Open the master\'s dashboard');
  assert.equal(e.windows.length, 2);
  assert.equal(e.windows[1]!.url, info.dashboardUrl);
  assert.equal((e.windows[1]!.options.webPreferences as { preload?: string }).preload, undefined, 'the dashboard window gets no bridge');
  assert.equal(e.windows[1]!.navigates(`${info.dashboardUrl}#/builds`), true);
  assert.equal(e.windows[1]!.navigates('https://evil.example/'), false);
});

test('first run → Run a master on this computer: the folder chosen is started and remembered', { timeout: 60_000 }, async (t) => {
  const dir = tempDir('desk-first-master');
  const config = join(dir, 'farm');
  mkdirSync(join(config, 'builders'), { recursive: true });
  writeBuilder(config, 'hello', 'requires: { executor: host }\nsteps:\n  - run: echo hi\n');
  const e = new ElectronStandIn(join(dir, 'userdata'));
  const app = startDesktop(e, options(dir, ['--listen', '127.0.0.1:0']));
  t.after(async () => { e.app.quit(); await until('quit', () => e.quitted); cleanup(dir); });
  await app.ready;
  assert.equal(value<AppInfo>(await e.invoke('app:info')).firstRun, true);
  assert.equal(value<{ dashboardUrl: string } | null>(await e.invoke('app:start-master')), null, 'the dialog was cancelled: nothing starts');
  e.dialogAnswer = config;
  const started = value<{ dashboardUrl: string }>(await e.invoke('app:start-master'));
  assert.match(started.dashboardUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const info = value<AppInfo>(await e.invoke('app:info'));
  assert.deepEqual([info.firstRun, info.runsMaster, info.dashboardUrl, info.settings.masterConfigDir], [false, true, started.dashboardUrl, config]);
  assert.deepEqual((await (await fetch(`${started.dashboardUrl}api/v1/builders`)).json() as { name: string }[]).map((b) => b.name), ['hello']);
});
