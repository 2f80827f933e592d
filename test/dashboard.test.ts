// End to end through the dashboard: a real master and a real worker (host executor, so no
// container is needed), driven in Debian's Chromium with playwright-core. Saves a screenshot
// of every screen to docs/screenshots/.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';
import { chromium, type Browser, type Page, type WebSocketRoute } from 'playwright-core';
import type { BuildView, WorkerView } from '../protocol/api.js';
import { PreferencesSchema } from '../protocol/control-api.js';
import { startMaster, type MasterHandle } from '../master/master.js';
import { openStore } from '../master/store/open-store.js';
import { createWorkerToken } from '../master/tokens.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';

const CHROMIUM = process.env.CROWDBAKE_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const STATIC_DIR = fileURLToPath(new URL('../renderer/', import.meta.url));
// docs/screenshots only when asked (CROWDBAKE_SCREENSHOTS=docs, as scripts/screenshots.mjs
// does); otherwise a temp dir, so a test run leaves the tree as it was.
const SHOTS_ENV = process.env.CROWDBAKE_SCREENSHOTS;
const SCREENSHOTS = SHOTS_ENV === 'docs' ? fileURLToPath(new URL('../../docs/screenshots/', import.meta.url))
  : SHOTS_ENV ? `${SHOTS_ENV.replace(/\/$/, '')}/` : `${mkdtempSync(join(tmpdir(), 'crowdbake-dashboard-shots-'))}/`;
const WORKER = 'volunteer-1';

const BUILDERS: Record<string, string> = {
  'hello.yml': [
    'description: Say hello, wait, say done',
    'requires: { executor: host }',
    'steps:',
    '  - name: greet',
    '    run: echo hello; sleep 2; echo done',
    '  - name: package',
    '    run: mkdir -p out && printf "hello artifact\\n" > out/hello.txt',
    'artifacts: [out/hello.txt]',
    '',
  ].join('\n'),
  'slow.yml': 'description: Takes its time\nrequires: { executor: host }\nsteps:\n  - name: wait\n    run: echo started; sleep 30\n',
  'gpu.yml': 'description: Needs a GPU no one has\nrequires: { executor: host, labels: [gpu] }\nsteps:\n  - run: nvidia-smi\n',
  'broken.yml': 'description: A typo\nstepz:\n  - run: make\n',
};

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The little of the page's DOM the page-side checks use (this file has no DOM types). */
interface PageDom {
  document: {
    getElementById(id: string): { dataset: Record<string, string | undefined> } | null;
    querySelectorAll(selector: string): Iterable<{ getAttribute(name: string): string | null }>;
  };
  __xss?: number;
}

describe('dashboard', { timeout: 90_000 }, () => {
  let dir: string;
  let master: MasterHandle;
  let worker: WorkerHandle;
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];
  // The events socket goes through playwright so a test can cut it: while `eventsDown`, the
  // dashboard's reconnect attempts are refused.
  let eventsDown = false;
  const eventSockets: { page: WebSocketRoute; server: WebSocketRoute }[] = [];

  const open = async (hash: string, heading: string) => {
    await page.goto(`${master.url}/${hash}`);
    await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  };
  const logText = () => page.locator('pre.log').textContent();
  const titleBadge = () => page.locator('.page-title .badge');
  const api = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${master.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${master.adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    assert.ok(res.ok, `${method} ${path}: HTTP ${res.status}`);
    return res.json();
  };
  const shot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

  before(async () => {
    assert.ok(existsSync(join(STATIC_DIR, 'index.html')), `the dashboard is not built in ${STATIC_DIR} (run npm run build)`);
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
    mkdirSync(SCREENSHOTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), 'crowdbake-dashboard-'));
    const configDir = join(dir, 'config');
    mkdirSync(join(configDir, 'builders'), { recursive: true });
    for (const [name, text] of Object.entries(BUILDERS)) writeFileSync(join(configDir, 'builders', name), text);
    const dataDir = join(dir, 'master');
    const quiet = console.error;
    console.error = () => undefined; // the master reports broken.yml on start; that is expected here
    try {
      master = await startMaster({ configDir, dataDir, host: '127.0.0.1', port: 0, staticDir: STATIC_DIR, watch: false });
    } finally {
      console.error = quiet;
    }
    const store = await openStore(`sqlite:${join(dataDir, 'crowdbake.db')}`);
    const token = await createWorkerToken(store, WORKER, ['linux']).finally(() => store.close());
    worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: master.url, token, dataDir: join(dir, 'worker'), executor: 'host', labels: [], log: () => undefined });
    await until('the worker to connect', async () => {
      const workers = (await (await fetch(`${master.url}/api/v1/workers`)).json()) as WorkerView[];
      return workers.some((w) => w.name === WORKER && w.connected);
    });

    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    page = await browser.newPage({ viewport: { width: 1200, height: 860 } });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    await page.routeWebSocket(/\/api\/v1\/events$/, async (ws) => {
      if (eventsDown) { await ws.close({ code: 1013, reason: 'test: the master is unreachable' }); return; }
      eventSockets.push({ page: ws, server: ws.connectToServer() });
    });
  });

  after(async () => {
    await browser?.close();
    await worker?.close();
    await master?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('builders page: every builder, config errors, runnable, live connection', async () => {
    await open('#/', 'Builders');
    for (const name of ['hello', 'slow', 'gpu', 'broken']) {
      await page.getByRole('heading', { level: 2, name }).waitFor();
    }
    const card = (name: string) => page.getByRole('article', { name });
    assert.match(await card('hello').textContent() ?? '', /Say hello, wait, say done/);
    assert.match(await card('broken').locator('.config-error').textContent() ?? '', /has errors[\s\S]*stepz/);
    assert.match(await card('gpu').textContent() ?? '', /No connected worker can run this \(no connected worker can run it: .* lacks label gpu/);
    assert.doesNotMatch(await card('hello').textContent() ?? '', /No connected worker/);
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
    assert.equal(await page.locator('.connection').getAttribute('aria-live'), 'polite');
  });

  test('force from the keyboard: Tab to the button, Enter, a wrong token is refused, then the right one', async () => {
    await open('#/', 'Builders');
    await page.getByRole('heading', { level: 2, name: 'hello' }).waitFor();
    await page.locator('body').focus();
    let reached = false;
    for (let i = 0; i < 25 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate('document.activeElement?.textContent') === 'Force build of hello';
    }
    assert.ok(reached, 'Tab never reached the Force build button of hello');
    assert.equal(await page.evaluate('getComputedStyle(document.activeElement).outlineStyle'), 'solid', 'the focused button shows a focus ring');
    await page.keyboard.press('Enter');

    const dialog = page.getByRole('dialog', { name: 'Admin token' });
    await dialog.waitFor();
    assert.equal(await page.evaluate('document.activeElement?.id'), 'admin-token-input');
    await page.keyboard.type('not-the-token');
    await page.keyboard.press('Enter');
    await dialog.getByRole('alert').filter({ hasText: 'wrong admin token' }).waitFor();
    await dialog.getByLabel('Admin token').fill(master.adminToken);
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'hidden' });

    const link = page.getByRole('link', { name: 'build #1' });
    await link.waitFor();
    assert.equal(await page.evaluate(`localStorage.getItem('crowdbake.adminToken')`), master.adminToken);
    await link.click();
    await page.getByRole('heading', { level: 1, name: /Build #1/ }).waitFor();

    // The log streams in: the line "hello" shows up before the line "done" (the step sleeps
    // between them; the command itself is echoed in the log too, hence whole lines).
    await until('"hello" in the log', async () => /^hello$/m.test(await logText() ?? ''));
    const streamed = !/^done$/m.test(await logText() ?? '');
    await until('"done" in the log', async () => /^done$/m.test(await logText() ?? ''), 15_000);
    assert.ok(streamed, 'the log arrived all at once instead of streaming');
    await until('the Success badge', async () => (await titleBadge().textContent()) === 'Success');

    const steps = page.getByRole('table', { name: 'Steps of build #1' });
    const rows = await steps.locator('tbody tr').allTextContents();
    assert.deepEqual(rows.map((r) => r.replace(/\s+/g, ' ')), ['1greetSuccess0', '2packageSuccess0']);
    const artifacts = page.getByRole('table', { name: 'Artifacts of build #1' });
    await artifacts.waitFor();
    const art = artifacts.getByRole('link', { name: 'hello.txt' });
    assert.equal(await art.getAttribute('href'), '/api/v1/builds/1/artifacts/hello.txt');
    assert.match(await artifacts.textContent() ?? '', /15 B[0-9a-f]{64}volunteer-1/);
    assert.equal(await page.getByRole('button', { name: 'Cancel build' }).count(), 0, 'no Cancel on a finished build');
    await shot('build-detail');
  });

  test('a running build is cancelled from its page', async () => {
    await open('#/', 'Builders');
    await page.getByRole('button', { name: 'Force build of slow' }).click(); // the token is kept now: no dialog
    const link = page.getByRole('link', { name: 'build #2' });
    await link.click();
    await page.getByRole('heading', { level: 1, name: /Build #2/ }).waitFor();
    await until('the build to run', async () => (await titleBadge().textContent()) === 'Running');
    await until('"started" in the log', async () => /^started$/m.test(await logText() ?? ''));
    await page.getByRole('button', { name: 'Cancel build' }).click();
    await until('the Cancelled badge', async () => (await titleBadge().textContent()) === 'Cancelled');
    await until('the cancel note in the log', async () => (await logText())?.includes('cancelled by a user'));
    await page.getByRole('button', { name: 'Cancel build' }).waitFor({ state: 'detached' });
  });

  test('builds page: history newest first and the queue', async () => {
    await open('#/', 'Builders');
    // No worker has the gpu label: this build waits in the queue.
    await page.getByRole('button', { name: 'Force build of gpu' }).click();
    await page.getByRole('link', { name: 'build #3' }).waitFor();
    const cells = await page.getByRole('list', { name: 'Recent builds of hello, newest first' }).getByRole('link').allTextContents();
    assert.deepEqual(cells, ['1']);
    assert.equal(await page.getByRole('link', { name: 'Build 1: Success' }).count(), 1);
    await shot('builders');

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Builds' }).click();
    await page.getByRole('heading', { level: 1, name: 'Builds' }).waitFor();
    const queue = page.getByRole('table', { name: 'Queued builds, in the order they will start' });
    await queue.waitFor();
    assert.match(await queue.locator('tbody').textContent() ?? '', /#3gpuQueued/);
    const recent = page.getByRole('table', { name: 'Recent builds, newest first' });
    const rows = (await recent.locator('tbody tr').allTextContents()).map((r) => r.slice(0, 20));
    assert.equal(rows.length, 2);
    assert.match(rows[0]!, /^#2slowCancelled/);
    assert.match(rows[1]!, /^#1helloSuccess/);
    assert.match(await recent.textContent() ?? '', /volunteer-1/);
    await shot('builds');
  });

  test('grid page: every builder with its queue and recent builds as cells', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Grid' }).click();
    await page.getByRole('heading', { level: 1, name: 'Grid' }).waitFor();
    const grid = page.getByRole('table', { name: 'Recent builds per builder' });
    const row = (name: string) => grid.getByRole('row', { name: new RegExp(`^${name}`) });
    await row('gpu').getByRole('link', { name: 'Build 3: Queued' }).waitFor();
    assert.deepEqual(await row('hello').getByRole('link').allTextContents(), ['hello', '1']);
    assert.equal(await row('hello').getByRole('link', { name: 'Build 1: Success' }).count(), 1);
    assert.match((await row('gpu').textContent() ?? '').replace(/\s+/g, ''), /^gpu10/, 'one queued, none running');
    await shot('grid');
  });

  test('workers page: the worker, connected, with what it offers and runs', async () => {
    const id = await api('POST', '/builders/slow/builds', {}).then((r) => (r as { id: number }).id);
    assert.equal(id, 4);
    await until('build 4 to run', async () => ((await api('GET', '/builds/4')) as { state: string }).state === 'running');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Workers' }).click();
    await page.getByRole('heading', { level: 1, name: 'Workers' }).waitFor();
    const row = page.getByRole('row', { name: new RegExp(WORKER) });
    await row.waitFor();
    await until('the worker to show busy with #4', async () => /Busy[\s\S]*#4/.test(await row.textContent() ?? ''));
    const text = await row.textContent() ?? '';
    assert.match(text, /Connected/);
    assert.match(text, /host/);
    assert.match(text, /linux/);
    assert.match(text, new RegExp(` / ${process.arch}`));
    await shot('workers');
  });

  test('after the live connection drops it reconnects and re-fetches what it missed', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Builds' }).click();
    const recent = page.getByRole('table', { name: 'Recent builds, newest first' });
    await until('#4 running', async () => /#4slowRunning/.test(await recent.textContent() ?? ''));
    eventsDown = true;
    for (const s of eventSockets.splice(0)) {
      await s.server.close();
      await s.page.close({ code: 1012, reason: 'test: connection cut' });
    }
    const status = page.locator('.connection');
    await until('the status to say offline', async () => /Offline|Reconnecting/.test(await status.textContent() ?? ''));
    // While the dashboard is cut off: build 4 is cancelled and build 5 forced; no event reaches it.
    await api('POST', '/builds/4/cancel', {});
    assert.equal(((await api('POST', '/builders/hello/builds', {})) as { id: number }).id, 5);
    await new Promise((r) => setTimeout(r, 300));
    assert.doesNotMatch(await recent.textContent() ?? '', /#4slowCancelled/);
    eventsDown = false;
    await until('the status to say live', async () => (await status.textContent()) === 'Live', 20_000);
    await until('the missed changes', async () => {
      const t = await recent.textContent() ?? '';
      return /#4slowCancelled/.test(t) && /#5hello/.test(t);
    });
  });

  test('the first rows, painted before the dashboard\'s code runs, show what a build carries as text, and so does the dashboard after them', async () => {
    // A revision is anyone's to choose (a forced build, a webhook's commit): markup in it, and a
    // `</script>` that would end an inline script, must stay text in both paints.
    const hostile = '<img src=x onerror="window.__xss=1"></script><script>window.__xss=2</script>';
    const { id } = (await api('POST', '/builders/gpu/builds', { revision: hostile })) as { id: number };
    const fresh = await browser.newPage({ viewport: { width: 1200, height: 860 } });
    try {
      const freshErrors: string[] = [];
      fresh.on('pageerror', (e) => freshErrors.push(e.message));
      fresh.on('dialog', (d) => { freshErrors.push(`dialog: ${d.message()}`); void d.dismiss(); });
      // The dashboard's main chunk is held back, so what is on the screen is boot.ts's paint alone.
      let release!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      await fresh.route(/\/chunks\/main-[^/]*\.js$/, async (r) => { await held; await r.continue(); });
      await fresh.goto(`${master.url}/#/builds`);
      // Page-side code (this file is compiled without the DOM's types, hence PageDom).
      const firstPaintIs = (yes: boolean) => fresh.waitForFunction((y) => ((globalThis as unknown as PageDom).document.getElementById('root')?.dataset.firstPaint === 'builds') === y, yes);
      await firstPaintIs(true);
      const inspect = () => fresh.evaluate((rev) => {
        const g = globalThis as unknown as PageDom;
        const all = (sel: string) => [...g.document.querySelectorAll(sel)];
        return { images: all('#root img').length, scripts: all('#root script').length, xss: g.__xss ?? null, titles: all('#root code').filter((c) => c.getAttribute('title') === rev).length };
      }, hostile);
      const first = await inspect();
      assert.deepEqual(first, { images: 0, scripts: 0, xss: null, titles: 1 }, 'first paint');
      assert.match(await fresh.locator('#root').textContent() ?? '', new RegExp(`#${id}gpu`));
      release();
      // The dashboard takes over: its own queue table (React) replaces the first paint.
      await firstPaintIs(false);
      await fresh.getByRole('table', { name: 'Queued builds, in the order they will start' }).waitFor();
      assert.deepEqual(await inspect(), { images: 0, scripts: 0, xss: null, titles: 1 }, 'after the dashboard ran');
      assert.deepEqual(freshErrors, []);
    } finally {
      await fresh.close();
      await api('POST', `/builds/${id}/cancel`, {});
    }
  });

  test('no JavaScript errors on any page', () => {
    // Chromium logs every failed request; the one refused on purpose (the wrong token) is expected.
    const refused = 'console: Failed to load resource: the server responded with a status of 403 (Forbidden)';
    assert.equal(errors.filter((e) => e === refused).length, 1, 'the wrong token was refused once');
    assert.deepEqual(errors.filter((e) => e !== refused), []);
  });
});

// The renderer's plain logic (no DOM needed), bundled for Node with esbuild: renderer/ is
// type-checked only, so this is how its modules get unit tests.
const LOGIC_ENTRY = `
export { mergeLog, capLog } from './renderer/src/log-merge';
export { parseRoute, href } from './renderer/src/router';
export { parseEvent } from './renderer/src/api';
export { createDashboardStore } from './renderer/src/store/store';
export { MAX_BUILDS } from './renderer/src/store/builds-slice';
export { MAX_LOG_CHARS } from './renderer/src/store/selection-slice';
export * as sel from './renderer/src/store/selectors';
export { buildStatus, formatBytes, formatDuration, shortRevision } from './renderer/src/format';
export { virtualWindow } from './renderer/src/virtual-window';
export { findMatches, stepMatch } from './renderer/src/log-search';
export { draftFrom, patchFrom, durationText, sizeText } from './renderer/src/agent/limits-model';
export { resultsByBuilder } from './renderer/src/agent/agent-store';
export { parseAgentRoute } from './renderer/src/agent/agent-router';
`;
// renderer/ is not part of this compilation (it resolves like a bundler), so the bundle's
// exports are typed here by hand, the store's state loosely.
interface Logic {
  mergeLog(fetched: string, chunks: readonly string[]): string;
  capLog(text: string, max: number): { text: string; truncated: boolean };
  parseRoute(hash: string): unknown;
  href: { builds(builder?: string | null): string };
  parseEvent(text: string): unknown;
  createDashboardStore(): { getState(): any };
  MAX_BUILDS: number;
  MAX_LOG_CHARS: number;
  sel: {
    selectQueueIds(builder: string | null): (state: any) => number[];
    selectHistoryIds(builder: string | null): (state: any) => number[];
    selectBuilderBuildIds(builder: string, limit: number): (state: any) => number[];
    selectWorkerBuildIds(name: string): (state: any) => number[];
    selectWorkerActivity(name: string): (state: any) => string;
  };
  buildStatus(b: Pick<BuildView, 'state' | 'result'>): string;
  formatBytes(n: number | null): string;
  formatDuration(ms: number): string;
  shortRevision(rev: string | null): string;
  virtualWindow(scrollTop: number, viewport: number, rowHeight: number, count: number, overscan?: number): { start: number; end: number; before: number; after: number };
  findMatches(text: string, query: string, max?: number): { ranges: [number, number][]; capped: boolean };
  stepMatch(current: number, count: number, direction: 1 | -1): number;
  draftFrom(p: unknown): Record<string, unknown>;
  patchFrom(d: unknown): { ok: true; patch: Record<string, unknown> } | { ok: false; errors: Record<string, string> };
  durationText(ms: number): string;
  sizeText(bytes: number): string;
  resultsByBuilder(history: unknown[]): { builder: string; runs: number; success: number; failure: number; other: number; rerunnable: { id: number } | null }[];
  parseAgentRoute(hash: string): unknown;
}

describe('dashboard logic', () => {
  let logic: Logic;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'crowdbake-logic-'));
    await build({
      stdin: { contents: LOGIC_ENTRY, resolveDir: ROOT, loader: 'ts', sourcefile: 'logic-entry.ts' },
      bundle: true, platform: 'node', format: 'esm', outfile: join(dir, 'logic.mjs'), logLevel: 'error',
      define: { 'process.env.NODE_ENV': '"production"' },
    });
    logic = (await import(join(dir, 'logic.mjs'))) as Logic;
  });
  after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  const view = (id: number, over: Partial<BuildView> = {}): BuildView => ({
    id, builder: 'hello', state: 'finished', result: 'success', worker: 'w1', revision: null, reason: null, attempt: 1,
    message: null, queuedAt: '2026-01-01T00:00:00Z', startedAt: null, finishedAt: null, steps: [], ...over,
  });

  test('mergeLog drops the chunks the fetched log already holds', () => {
    const { mergeLog } = logic;
    assert.equal(mergeLog('a\nb\n', []), 'a\nb\n');
    assert.equal(mergeLog('a\nb\n', ['c\n']), 'a\nb\nc\n');
    assert.equal(mergeLog('a\nb\n', ['b\n', 'c\n']), 'a\nb\nc\n');
    assert.equal(mergeLog('a\nb\nc\n', ['b\n', 'c\n']), 'a\nb\nc\n');
    assert.equal(mergeLog('', ['x', 'y']), 'xy');
  });

  test('capLog keeps the tail from a line start', () => {
    assert.deepEqual(logic.capLog('short', 10), { text: 'short', truncated: false });
    assert.deepEqual(logic.capLog('line1\nline2\nline3\n', 14), { text: 'line2\nline3\n', truncated: true });
  });

  test('routes', () => {
    const { parseRoute, href } = logic;
    assert.deepEqual(parseRoute(''), { page: 'builders' });
    assert.deepEqual(parseRoute('#/'), { page: 'builders' });
    assert.deepEqual(parseRoute('#/builds'), { page: 'builds', builder: null });
    assert.deepEqual(parseRoute(href.builds('a b')), { page: 'builds', builder: 'a b' });
    assert.deepEqual(parseRoute('#/builds/42'), { page: 'build', id: 42 });
    assert.deepEqual(parseRoute('#/workers'), { page: 'workers' });
    assert.deepEqual(parseRoute('#/builds/x'), { page: 'not-found', path: '/builds/x' });
  });

  test('events are checked against the protocol', () => {
    const { parseEvent } = logic;
    assert.deepEqual(parseEvent('{"type":"log","buildId":3,"data":"hi"}'), { type: 'log', buildId: 3, data: 'hi' });
    assert.deepEqual(parseEvent(JSON.stringify({ type: 'build', build: view(1) })), { type: 'build', build: view(1) });
    assert.match(parseEvent('{"type":"log","buildId":"3","data":"hi"}') as string, /^an invalid event: buildId/);
    assert.match(parseEvent('{"type":"gossip"}') as string, /^an invalid event/);
    assert.equal(parseEvent('not json'), 'a frame that is not JSON');
  });

  test('builds slice: newest first, queue oldest first, a newer copy is kept', () => {
    const store = logic.createDashboardStore();
    const s = () => store.getState();
    s().putBuilds([view(2, { state: 'queued', result: null }), view(5), view(3, { state: 'queued', result: null, builder: 'other' })]);
    assert.deepEqual(s().buildIds, [5, 3, 2]);
    assert.deepEqual(logic.sel.selectQueueIds(null)(s()), [2, 3]);
    assert.deepEqual(logic.sel.selectQueueIds('other')(s()), [3]);
    assert.deepEqual(logic.sel.selectHistoryIds(null)(s()), [5]);
    assert.deepEqual(logic.sel.selectBuilderBuildIds('hello', 1)(s()), [5]);
    const before = s().builds[2];
    s().putBuilds([view(2, { state: 'running', result: null })], (id: number) => id === 2);
    assert.equal(s().builds[2], before, 'skip() keeps the copy held');
    s().putBuilds([view(2, { state: 'running', result: null })]);
    assert.equal(s().builds[2]!.state, 'running');
  });

  test('builds slice: old builds are dropped past the cap, not the selected one', () => {
    const store = logic.createDashboardStore();
    store.getState().selectBuild(1);
    store.getState().putBuilds(Array.from({ length: logic.MAX_BUILDS + 10 }, (_, i) => view(i + 1)));
    const ids = store.getState().buildIds;
    assert.equal(ids.length, logic.MAX_BUILDS + 1);
    assert.equal(ids[0], logic.MAX_BUILDS + 10);
    assert.equal(ids.at(-1), 1);
  });

  test('worker activity comes from the builds known to run on it', () => {
    const store = logic.createDashboardStore();
    const s = () => store.getState();
    const worker = { name: 'w1', connected: true, state: 'idle' as const, labels: [], executors: ['host'], cpus: 2, memory: null, os: null, arch: null, builds: [7], lastSeenAt: null };
    s().putWorkers([worker]);
    s().putBuilds([view(7, { state: 'finished' }), view(8, { state: 'running', result: null })]);
    assert.deepEqual(logic.sel.selectWorkerBuildIds('w1')(s()), [8], 'finished 7 is dropped, running 8 is added');
    assert.equal(logic.sel.selectWorkerActivity('w1')(s()), 'busy');
    s().putBuilds([view(8, { state: 'frozen', result: null })]);
    assert.equal(logic.sel.selectWorkerActivity('w1')(s()), 'frozen');
    s().putWorkers([{ ...worker, connected: false, state: 'offline' }]);
    assert.equal(logic.sel.selectWorkerActivity('w1')(s()), 'offline');
    assert.deepEqual(logic.sel.selectWorkerBuildIds('w1')(s()), []);
  });

  test('selection: the log is appended and capped', () => {
    const store = logic.createDashboardStore();
    const s = () => store.getState();
    s().selectBuild(4);
    assert.equal(s().selection.logStatus, 'loading');
    s().setLog('a\n');
    s().appendLog('b\n');
    assert.deepEqual([s().selection.log, s().selection.logStatus, s().selection.logTruncated], ['a\nb\n', 'ready', false]);
    s().appendLog(`${'x'.repeat(logic.MAX_LOG_CHARS)}\nend\n`);
    assert.equal(s().selection.logTruncated, true);
    assert.ok(s().selection.log.length <= logic.MAX_LOG_CHARS);
    assert.ok(s().selection.log.endsWith('end\n'));
  });

  test('format helpers', () => {
    assert.equal(logic.formatBytes(15), '15 B');
    assert.equal(logic.formatBytes(1536), '1.5 KiB');
    assert.equal(logic.formatBytes(24 * 1024 ** 3), '24 GiB');
    assert.equal(logic.formatDuration(2000), '2s');
    assert.equal(logic.formatDuration(125_000), '2m 05s');
    assert.equal(logic.buildStatus({ state: 'finished', result: 'failure' }), 'failure');
    assert.equal(logic.buildStatus({ state: 'running', result: null }), 'running');
    assert.equal(logic.shortRevision('0123456789abcdef0123456789abcdef01234567'), '0123456789');
    assert.equal(logic.shortRevision('v1.2'), 'v1.2');
  });

  test('virtual window: only the rows in view plus overscan, spacers for the rest', () => {
    assert.deepEqual(logic.virtualWindow(0, 380, 38, 10_000, 5), { start: 0, end: 15, before: 0, after: (10_000 - 15) * 38 });
    assert.deepEqual(logic.virtualWindow(38 * 5000, 380, 38, 10_000, 5), { start: 4995, end: 5015, before: 4995 * 38, after: (10_000 - 5015) * 38 });
    assert.deepEqual(logic.virtualWindow(38 * 20_000, 380, 38, 10_000, 5), { start: 10_000, end: 10_000, before: 380_000, after: 0 }, 'scrolled past the end');
    assert.deepEqual(logic.virtualWindow(0, 380, 38, 3, 5), { start: 0, end: 3, before: 0, after: 0 });
  });

  test('log search: case-insensitive ranges, capped, stepping wraps', () => {
    assert.deepEqual(logic.findMatches('Error: x\nerror again', 'ERROR'), { ranges: [[0, 5], [9, 14]], capped: false });
    assert.deepEqual(logic.findMatches('aaaa', 'aa'), { ranges: [[0, 2], [2, 4]], capped: false }, 'no overlaps');
    assert.deepEqual(logic.findMatches('abc', ''), { ranges: [], capped: false });
    assert.deepEqual(logic.findMatches('x'.repeat(10), 'x', 3), { ranges: [[0, 1], [1, 2], [2, 3]], capped: true });
    assert.equal(logic.stepMatch(-1, 3, 1), 0);
    assert.equal(logic.stepMatch(-1, 3, -1), 2);
    assert.equal(logic.stepMatch(2, 3, 1), 0);
    assert.equal(logic.stepMatch(0, 3, -1), 2);
    assert.equal(logic.stepMatch(0, 0, 1), -1);
  });

  test('limits form: round-trips the preferences, names each bad field, sends typed values', () => {
    // The agent's own defaults for everything this test does not set (protocol/control-api.ts).
    const prefs = PreferencesSchema.parse({ when: 'idle', idleAfterMs: 180_000, schedule: null, onBattery: false, maxOtherCpuPercent: null, cpus: 2, memoryBytes: 4 * 1024 ** 3, diskBytes: null, paused: false, snoozeUntil: null });
    const draft = logic.draftFrom(prefs);
    assert.deepEqual([draft.idleAfter, draft.cpus, draft.memory, draft.disk], ['3m', '2', '4g', '']);
    assert.deepEqual(logic.patchFrom(draft), {
      ok: true,
      patch: {
        when: 'idle', onBattery: false, idleAfter: '180000ms', schedule: null, maxOtherCpuPercent: null, cpus: 2, memory: '4g', disk: null,
        // The volunteer controls of [desktop], at the agent's defaults.
        weekSchedule: null, whileHere: 'freeze', hereCpus: 1, hereCpuPercent: null, otherCpuGrace: '30000ms', maxTemperatureC: null, startPaused: false,
      },
    });
    const bad = logic.patchFrom({ ...draft, idleAfter: 'soon', cpus: '0', memory: '4 lumps', maxOtherCpu: '150', scheduleOn: true, start: '25:00', end: '07:00' });
    assert.equal(bad.ok, false);
    if (!bad.ok) assert.deepEqual(Object.keys(bad.errors).sort(), ['cpus', 'idleAfter', 'maxOtherCpu', 'memory', 'start']);
    assert.equal(logic.durationText(90_000), '90s');
    assert.equal(logic.sizeText(1536 * 1024 ** 2), '1536m');
    assert.deepEqual(logic.parseAgentRoute('#/history/7'), { page: 'entry', id: 7 });
    assert.deepEqual(logic.parseAgentRoute('#/history?builder=a'), { page: 'history', builder: 'a' });
  });

  test('results by builder: counts per result, the newest re-runnable entry', () => {
    const e = (id: number, builder: string, result: string | null, canRerun = true) => ({ id, builder, result, canRerun, buildId: id, attempt: 1, master: 'm', revision: null, message: null, startedAt: '', finishedAt: result ? 'x' : null, frozenMs: 0, rerunOf: null });
    const r = logic.resultsByBuilder([e(5, 'b', null, false), e(4, 'a', 'failure'), e(3, 'b', 'success'), e(2, 'a', 'success'), e(1, 'a', 'cancelled')]);
    assert.deepEqual(r.map((x) => [x.builder, x.runs, x.success, x.failure, x.other, x.rerunnable?.id]), [['a', 3, 1, 1, 1, 4], ['b', 2, 1, 0, 0, 3]]);
  });
});
