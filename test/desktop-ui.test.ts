// The desktop app's window in Debian's Chromium, against a real master and a real worker agent,
// through a TEST PRELOAD standing in for app/preload.cts (no Electron binary here): it exposes
// the same `window.crowdbake.invoke(channel, arg)` and hands every call to the app's real IPC
// router (app/ipc-router.ts), with the same sender check as main. The page is served exactly as
// the app serves it (app/app-page.ts). Covers the first-run screen (a bad link, then a good
// one), This computer with a live log, Limits (keep going gently, the weekday schedule),
// History, Results by builder, Projects (share, leave) and What this computer gave.
// Screenshots go to a temporary directory, or to docs/screenshots with CROWDBAKE_SCREENSHOTS=docs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { BuildView } from '../protocol/api.js';
import { appPageResponse } from '../app/app-page.js';
import { AppSettingsStore } from '../app/app-settings.js';
import { createIpcRouter } from '../app/ipc-router.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster, until, type TestMaster } from './helpers/cluster.js';

const CHROMIUM = process.env.CROWDBAKE_CHROMIUM ?? '/usr/bin/chromium';
const RENDERER = fileURLToPath(new URL('../renderer/', import.meta.url));
const BUILDERS = {
  ticker: 'description: Counts slowly\nrequires: { executor: host }\nsteps:\n  - name: count\n    run: "i=0; while [ $i -lt 25 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done; echo all done"\n',
  quick: 'description: Says hello\nrequires: { executor: host }\nsteps:\n  - run: echo hello\n',
};

describe('the desktop window (Chromium, test preload standing in for Electron\'s)', { timeout: 180_000 }, () => {
  let m: TestMaster;
  let dir: string;
  let shots: string;
  let server: Server;
  let origin: string;
  let worker: WorkerHandle | null = null;
  let update: { state: 'current' | 'available' | 'required'; message: string } = { state: 'current', message: '' };
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];
  const calls: string[] = [];
  const shot = (name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const open = async (hash: string, heading: string | RegExp) => {
    await page.goto(`${origin}/index.html${hash}`);
    await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  };
  const invite = () => {
    const made = spawnSync(process.execPath, [CLI, 'invite', 'create', '--data', m.dataDir, '--uses', '5'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    return made.stdout.trim().split('\n').at(-1)!;
  };

  before(async () => {
    assert.ok(existsSync(join(RENDERER, 'index.html')), `the renderer is not built in ${RENDERER} (run npm run build)`);
    dir = tempDir('desktop-ui');
    shots = process.env.CROWDBAKE_SCREENSHOTS === 'docs' ? fileURLToPath(new URL('../../docs/screenshots/', import.meta.url)) : join(dir, 'screenshots');
    mkdirSync(shots, { recursive: true });
    m = await testMaster(BUILDERS, { dir: join(dir, 'master') });
    const dataDir = join(dir, 'worker');
    const route = createIpcRouter({
      dataDir, settings: new AppSettingsStore(join(dir, 'userdata')),
      info: () => ({ version: '0.1.0', platform: process.platform, dashboardUrl: null, runsMaster: false, update, pendingJoinLink: null }),
      // What the app's supervisor does after a join: the agent starts (here in this process, host executor).
      projectsChanged: () => {
        if (worker) return;
        void startWorker({ dataDir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } }).then((w) => { worker = w; });
      },
      settingsChanged: () => undefined,
      startMaster: async () => null,
      openDashboard: () => false,
      openExternal: async () => false,
    });
    server = createServer((req, res) => {
      const r = appPageResponse(RENDERER, `crowdbake-app://app${req.url ?? '/'}`);
      res.writeHead(r.status, r.headers);
      res.end(r.body);
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    const context = await browser.newContext({ viewport: { width: 1200, height: 860 } });
    // The test preload: the same bridge as app/preload.cts, calls answered by the app's router, only for this page.
    await context.exposeBinding('__crowdbakeInvoke', async (source, channel: unknown, arg: unknown) => {
      if (!source.frame.url().startsWith(`${origin}/`)) return { ok: false, error: 'IPC refused for another page' };
      calls.push(String(channel));
      return route(channel, arg);
    });
    await context.addInitScript(() => {
      const w = globalThis as unknown as { crowdbake: unknown; __crowdbakeInvoke: (c: string, a: unknown) => Promise<unknown> };
      w.crowdbake = Object.freeze({ invoke: (channel: string, arg?: unknown) => w.__crowdbakeInvoke(channel, arg) });
    });
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error' && !/status of 404/.test(msg.text())) errors.push(`console: ${msg.text()}`); });
    // Chromium asks an http page for /favicon.ico (the app's scheme is not asked); any other missing file is a defect.
    page.on('response', (r) => { if (r.status() === 404 && !r.url().endsWith('/favicon.ico')) errors.push(`404: ${r.url()}`); });
  });

  after(async () => {
    await browser?.close();
    await worker?.close();
    await m?.close();
    await new Promise((ok) => server?.close(ok));
    if (dir) cleanup(dir);
  });

  test('first run: the defaults are explained before anything starts; a bad link gets its reason; a good one joins and the agent starts', async () => {
    await open('#/', 'Welcome to Crowdbake');
    const text = await page.locator('main').textContent() ?? '';
    assert.match(text, /only after 3m 00s without keyboard or mouse input/);
    assert.match(text, /the moment you touch the computer, running builds freeze/);
    assert.match(text, /never on battery power/);
    assert.match(text, /Run a master on this computer/);
    assert.equal(worker, null, 'nothing runs before the volunteer joins');
    await shot('desktop-first-run');

    await page.getByLabel('Join link').fill('https://example.org/not-a-link');
    await page.getByRole('button', { name: 'Join' }).click();
    await page.getByRole('alert').filter({ hasText: 'Could not join' }).waitFor();
    assert.match(await page.getByRole('alert').filter({ hasText: 'Could not join' }).textContent() ?? '', /crowdbake:/);
    await shot('desktop-first-run-bad-link');

    await page.getByLabel('Join link').fill(invite());
    await page.getByLabel(/Your name at the project/).fill('Ada');
    await page.getByRole('button', { name: 'Join' }).click();
    await page.getByRole('heading', { level: 1, name: 'This computer' }).waitFor({ timeout: 60_000 });
    await until('the agent runs', () => worker?.status().master.connected, 60_000);
  });

  test('This computer: state, why, the current build with its live log; finish this build, then pause', async () => {
    const id = await m.force('ticker');
    await open('#/', 'This computer');
    await page.locator('.state-word', { hasText: 'Building' }).waitFor();
    await page.locator('pre.log').filter({ hasText: 'tick 3' }).waitFor({ timeout: 30_000 });
    assert.match(await page.locator('main').textContent() ?? '', /builds run whenever work is assigned/);
    await shot('desktop-this-computer');
    await page.getByRole('button', { name: 'Finish this build, then pause' }).click();
    await page.getByText('Pausing once the current build finishes').waitFor();
    assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'running', 'not frozen');
    assert.equal((await m.waitFinished(id, 60_000)).result, 'success');
    await page.locator('.state-word', { hasText: 'Paused' }).waitFor({ timeout: 20_000 });
    await page.getByRole('button', { name: 'Resume builds' }).click();
    await page.locator('.state-word', { hasText: 'Idle' }).waitFor();
  });

  test('Limits: keep going gently with a CPU cap and a schedule per weekday; a bad value is explained and changes nothing', async () => {
    await open('#/limits', 'Limits');
    await page.getByLabel('Keep going gently').check();
    await page.getByLabel('Cores at most').fill('0.5');
    await page.getByLabel('Schedule per weekday').fill('funday any');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.getByText(/Schedule per weekday: "funday" in "funday any" is not a weekday/).waitFor();
    assert.equal(worker!.status().preferences.whileHere, 'freeze', 'nothing was changed');
    await page.getByLabel('Schedule per weekday').fill('sat,sun any; mon-fri 00:00-00:00');
    await page.getByLabel('Temperature cap (°C)').fill('85');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.getByText('Saved; the agent applies them now.').waitFor();
    const p = worker!.status().preferences;
    assert.deepEqual([p.whileHere, p.hereLimits.cpus, p.maxTemperatureC, Object.keys(p.weekSchedule ?? {})], ['gently', 0.5, 85, ['mon', 'tue', 'wed', 'thu', 'fri']]);
    await shot('desktop-limits');
  });

  test('History, Results by builder, Projects (share, leave) and What this computer gave', async () => {
    assert.equal((await m.waitFinished(await m.force('quick'), 60_000)).result, 'success');
    await open('#/history', 'History');
    await page.getByRole('cell', { name: 'quick' }).first().waitFor();
    await shot('desktop-history');
    // What the app learnt from the masters' GET /api/v1/version (app/attention.ts): the window says so on every page.
    update = { state: 'required', message: 'An update is required: http://farm no longer accepts this version (worker protocol 2; it needs 3 or newer).' };
    await open('#/results', /Results/);
    assert.match(await page.getByRole('alert').textContent() ?? '', /An update is required: http:\/\/farm no longer accepts this version/);
    await shot('desktop-update-required');
    update = { state: 'current', message: '' };
    await open('#/results', /Results/);
    await page.getByText('ticker').first().waitFor();
    await shot('desktop-results');

    await open('#/gave', 'What this computer gave');
    await page.locator('.gave-chart canvas').first().waitFor();
    const totals = await page.locator('.gave-table tfoot').textContent() ?? '';
    assert.match(totals, /2 build\(s\)/, totals);
    await shot('desktop-gave');

    await open('#/projects', 'Projects');
    const project = worker!.status().projects![0]!.name;
    await page.getByRole('cell', { name: 'connected' }).waitFor();
    await page.getByLabel(`Share of ${project}`).fill('3');
    await page.getByRole('button', { name: 'Set' }).click();
    await until('share 3', () => worker!.status().projects?.[0]?.share === 3);
    await shot('desktop-projects');
    await page.getByRole('button', { name: 'Leave…' }).click();
    await page.getByRole('button', { name: `Leave ${project}` }).click();
    // Nothing joined any more: the window is back at its first-run screen.
    await page.getByRole('heading', { level: 1, name: 'Welcome to Crowdbake' }).waitFor();
    await until('the agent left', () => worker!.status().projects?.length === 0);
    assert.deepEqual(errors, []);
    assert.ok(calls.includes('projects:join') && calls.includes('agent:history') && calls.includes('agent:log'), calls.join(' '));
  });
});
