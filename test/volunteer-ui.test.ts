// The volunteer pages end to end: a real master, a real worker (host executor) and its local
// control API serving the renderer in its volunteer mode, driven in Debian's Chromium. Checks
// the browser sign-in (single-use ticket, HttpOnly SameSite=Strict cookie, Host and Origin
// checks), state, live log, pause/snooze/resume, limits, history, results, local re-run and log
// search, against what the CLI reports. Saves a screenshot of every page (see SCREENSHOTS).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { BuildView } from '../protocol/api.js';
import type { AgentStatus } from '../protocol/control-api.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster, until, type TestMaster } from './helpers/cluster.js';

const CHROMIUM = process.env.CROWDBAKE_CHROMIUM ?? '/usr/bin/chromium';
const STATIC_DIR = fileURLToPath(new URL('../renderer/', import.meta.url));
// Into docs/screenshots with CROWDBAKE_SCREENSHOTS=docs (to refresh the README's pictures); otherwise a temporary directory, so a run leaves the tree clean.
const SCREENSHOTS = process.env.CROWDBAKE_SCREENSHOTS === 'docs' ? fileURLToPath(new URL('../../docs/screenshots/', import.meta.url)) : join(tempDir('volunteer-ui-shots'), 'screenshots');

const BUILDERS = {
  ticker: 'description: Counts slowly\nrequires: { executor: host }\nsteps:\n  - name: count\n    run: "i=0; while [ $i -lt 40 ]; do echo tick $i; i=$((i+1)); sleep 0.3; done; echo all done"\n',
  flaky: 'description: Fails with a message\nrequires: { executor: host }\nsteps:\n  - name: check\n    run: "echo checking widget; echo widget is broken; echo widget again; exit 3"\n',
  sleeper: 'description: Sleeps\nrequires: { executor: host }\nsteps:\n  - name: nap\n    run: "echo napping; sleep 30"\n',
};

const cli = (...args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((ok) => {
  execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (e, out, err) => ok({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
});

/** A raw HTTP request, so the Host and Origin headers can be whatever a test needs. */
function raw(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((ok, fail) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.end(opts.body);
  });
}

describe('volunteer pages', { timeout: 120_000 }, () => {
  let m: TestMaster;
  let dataDir: string;
  let worker: WorkerHandle;
  let control: { url: string; secret: string };
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];

  const status = async () => JSON.parse((await cli('status', '--json', '--data', dataDir)).out) as AgentStatus;
  const ticket = async () => {
    const res = await fetch(`${control.url}/api/v1/ui-tickets`, { method: 'POST', headers: { authorization: `Bearer ${control.secret}` } });
    assert.equal(res.status, 201);
    return ((await res.json()) as { url: string }).url;
  };
  const open = async (hash: string, heading: string | RegExp) => {
    await page.goto(`${control.url}/${hash}`);
    await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  };
  const shot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
  const logText = () => page.locator('pre.log').textContent();

  before(async () => {
    assert.ok(existsSync(join(STATIC_DIR, 'index.html')), `the renderer is not built in ${STATIC_DIR} (run npm run build)`);
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
    mkdirSync(SCREENSHOTS, { recursive: true });
    m = await testMaster(BUILDERS);
    dataDir = tempDir('volunteer-ui');
    worker = await startWorker({
      master: m.url, token: await m.token('alice-laptop'), dataDir, executor: 'host', labels: [], log: () => undefined,
      idleSource: 'none', preferences: { when: 'always' },
    });
    await until('connected', () => worker.status().master.connected);
    control = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as typeof control;
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    context = await browser.newContext({ viewport: { width: 1200, height: 860 } });
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(`console: ${msg.text()}`); });
  });

  after(async () => {
    await browser?.close();
    await worker?.close();
    await m?.close();
    if (dataDir) cleanup(dataDir);
    if (process.env.CROWDBAKE_SCREENSHOTS !== 'docs') cleanup(dirname(SCREENSHOTS));
  });

  test('sign-in: the page asks for `crowdbake ui` until a single-use ticket sets an HttpOnly SameSite=Strict cookie', async () => {
    await open('#/', 'Sign in from this computer');
    assert.match(await page.locator('main').textContent() ?? '', /crowdbake ui/);
    const link = await ticket();
    const first = await raw(link);
    assert.equal(first.status, 303);
    const cookie = String(first.headers['set-cookie']);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.equal((await raw(link)).status, 403, 'a ticket works once');
    assert.equal((await raw(`${control.url}/ui/login?ticket=made-up`)).status, 403);

    await page.goto(await ticket());
    await page.getByRole('heading', { level: 1, name: 'This computer' }).waitFor();
    assert.equal(new URL(page.url()).search, '', 'the ticket does not stay in the address bar');
    const cookies = await context.cookies(control.url);
    assert.equal(cookies.length, 1);
    assert.deepEqual([cookies[0]!.httpOnly, cookies[0]!.sameSite], [true, 'Strict']);
    assert.equal(await page.evaluate('document.cookie'), '', 'scripts cannot read the session');
  });

  test('the control API refuses other Host names (DNS rebinding), cross-origin writes and tickets for cookies', async () => {
    const port = new URL(control.url).port;
    const cookie = (await context.cookies(control.url)).map((c) => `${c.name}=${c.value}`).join('; ');
    const rebound = await raw(`${control.url}/api/v1/status`, { headers: { host: `evil.example:${port}`, cookie } });
    assert.equal(rebound.status, 421);
    assert.match((JSON.parse(rebound.body) as { error: string }).error, /Host header "evil.example:\d+" is not this agent's loopback address/);
    assert.equal((await raw(`${control.url}/`, { headers: { host: `attacker.test:${port}` } })).status, 421, 'pages too');
    assert.equal((await raw(`${control.url}/api/v1/status`, { headers: { host: `localhost:${port}`, cookie } })).status, 200);
    assert.equal((await raw(`${control.url}/api/v1/status`)).status, 401, 'no cookie, no bearer');
    const cross = await raw(`${control.url}/api/v1/pause`, { method: 'POST', headers: { cookie, origin: 'http://evil.example' } });
    assert.equal(cross.status, 403);
    assert.match(cross.body, /must come from this agent's own page/);
    assert.equal((await raw(`${control.url}/api/v1/pause`, { method: 'POST', headers: { cookie } })).status, 403, 'a write without Origin');
    assert.equal((await raw(`${control.url}/api/v1/ui-tickets`, { method: 'POST', headers: { cookie, origin: control.url } })).status, 403);
    assert.equal((await status()).preferences.paused, false, 'none of that paused the agent');
  });

  test('this computer: idle, then a build from the master streams its log live', async () => {
    await open('#/', 'This computer');
    const card = page.locator('.state-card');
    await until('Idle', async () => /Idle/.test(await card.locator('h2').textContent() ?? ''));
    assert.match(await card.textContent() ?? '', /alice-laptop/);
    const id = await m.force('ticker');
    await until('Building', async () => /Building/.test(await card.locator('h2').textContent() ?? ''));
    await until('tick 3 in the log', async () => /^tick 3$/m.test(await logText() ?? ''));
    const streamed = !/^all done$/m.test(await logText() ?? '');
    assert.match(await page.locator('#main').textContent() ?? '', new RegExp(`ticker · build #${id}`));
    await shot('volunteer-overview');
    await until('all done', async () => /^all done$/m.test(await logText() ?? ''), 40_000);
    assert.ok(streamed, 'the log arrived all at once');
    assert.equal((await m.waitFinished(id, 30_000)).result, 'success');
    await until('Idle again', async () => /Idle/.test(await card.locator('h2').textContent() ?? ''));
  });

  test('pause, resume and snooze from the page: the agent and the master follow', async () => {
    await open('#/', 'This computer');
    const card = page.locator('.state-card h2');
    await page.getByRole('button', { name: 'Pause builds' }).click();
    await until('Paused', async () => /Paused/.test(await card.textContent() ?? ''));
    assert.equal((await status()).state, 'paused');
    await until('the master sees it', async () => (await m.get<{ accepting: boolean }[]>('/api/v1/workers'))[0]?.accepting === false);
    await shot('volunteer-paused');
    await page.getByRole('button', { name: 'Resume builds' }).click();
    await until('Idle', async () => /Idle/.test(await card.textContent() ?? ''));
    assert.equal((await status()).preferences.paused, false);

    await page.getByRole('button', { name: 'Snooze for 1 hour' }).click();
    await page.getByText(/^Snoozed until/).waitFor();
    const s = await status();
    assert.equal(s.state, 'paused');
    const left = new Date(s.preferences.snoozeUntil!).getTime() - Date.now();
    assert.ok(left > 3_500_000 && left <= 3_600_000, `snoozed for ${left} ms`);
    const queued = await m.force('flaky');
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await m.get<BuildView>(`/api/v1/builds/${queued}`)).state, 'queued', 'a snoozed worker takes nothing');
    await page.getByRole('button', { name: 'Resume builds' }).click();
    assert.equal((await m.waitFinished(queued, 30_000)).result, 'failure');
    assert.equal((await status()).preferences.snoozeUntil, null);
  });

  test('a running build cancelled on the master shows cancelled in the local history', async () => {
    const id = await m.force('sleeper');
    await open('#/', 'This computer');
    await until('napping', async () => /napping/.test(await logText() ?? ''));
    const res = await fetch(`${m.url}/api/v1/builds/${id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${m.adminToken}` } });
    assert.equal(res.status, 202);
    await m.waitFinished(id, 20_000);
    await open('#/history', 'History');
    const table = page.getByRole('table', { name: 'Builds run on this computer, newest first' });
    await until('the cancelled row', async () => /sleeperCancelled/.test((await table.locator('tbody tr').first().textContent()) ?? ''));
  });

  test('limits: bad values are named and change nothing; good ones apply live (the CLI agrees)', async () => {
    await open('#/limits', 'Limits');
    const form = page.locator('form.limits-form');
    await page.getByLabel('CPU cores').fill('-2');
    await page.getByLabel('Memory').fill('lots');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await form.getByRole('alert').filter({ hasText: '2 values need fixing' }).waitFor();
    assert.match(await form.textContent() ?? '', /CPU cores: a positive number/);
    assert.match(await form.textContent() ?? '', /Memory: "lots" is not a size/);
    assert.equal(await page.evaluate('document.activeElement?.id'), 'limit-cpus', 'focus goes to the first bad field');
    assert.equal(await page.getByLabel('CPU cores').getAttribute('aria-invalid'), 'true');
    assert.equal((await status()).preferences.cpus, null, 'nothing was sent');

    await page.getByLabel('CPU cores').fill('1.5');
    await page.getByLabel('Memory').fill('2g');
    await page.getByLabel('Disk').fill('10g');
    await page.getByLabel('Only while I am away (idle)').check();
    await page.getByLabel('Idle time before builds start').fill('5m');
    await page.getByLabel('Only during these hours').check();
    await page.getByLabel('From').fill('22:30');
    await page.getByLabel('Until').fill('06:15');
    await page.getByLabel('Build while on battery power').check();
    await page.getByLabel(/Hold builds while other programs use more than/).fill('40');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.getByText('Saved; the agent applies them now.').waitFor();
    await shot('volunteer-limits');
    const p = (await status()).preferences;
    assert.deepEqual(
      [p.cpus, p.memoryBytes, p.diskBytes, p.when, p.idleAfterMs, p.schedule, p.onBattery, p.maxOtherCpuPercent],
      [1.5, 2 * 1024 ** 3, 10 * 1024 ** 3, 'idle', 300_000, { start: '22:30', end: '06:15' }, true, 40],
    );
    assert.match((await cli('limits', '--data', dataDir)).out, /caps: +cpus 1\.5, memory 2\.0 GiB, disk 10\.0 GiB/);
    // Back to building whenever, with no caps, for the tests after this one.
    await page.getByLabel('Whenever there is work').check();
    await page.getByLabel('Only during these hours').uncheck();
    for (const l of ['CPU cores', 'Memory', 'Disk']) await page.getByLabel(l).fill('');
    await page.getByRole('button', { name: 'Save limits' }).click();
    await page.getByText('Saved; the agent applies them now.').waitFor();
    const q = (await status()).preferences;
    assert.deepEqual([q.cpus, q.memoryBytes, q.when, q.schedule], [null, null, 'always', null]);
  });

  test('history, results by builder, a local re-run, and searching its log', async () => {
    await open('#/results', 'Results by builder');
    const table = page.getByRole('table', { name: 'Results per builder on this computer' });
    await table.waitFor();
    const rows = (await table.locator('tbody tr').allTextContents()).map((r) => r.replace(/\s+/g, ' '));
    assert.equal(rows.length, 3);
    assert.match(rows[0]!, /^flakyFailure1010/);
    assert.match(rows[1]!, /^sleeperCancelled1001/);
    assert.match(rows[2]!, /^tickerSuccess1100/);
    await shot('volunteer-results');

    await table.getByRole('button', { name: /Run again here \(flaky/ }).click();
    await page.getByRole('heading', { level: 1, name: /Local build #\d+/ }).waitFor();
    await until('the re-run to fail like the original', async () => (await page.locator('.page-title .badge').textContent()) === 'Failure');
    assert.match(await page.locator('.summary').textContent() ?? '', /re-run here of local #\d+/);
    await until('the whole log', async () => /widget again/.test(await logText() ?? ''));

    // Search: Enter and Shift+Enter move through the matches, the current one marked.
    const search = page.getByRole('searchbox', { name: 'Search the log' });
    await search.fill('WIDGET');
    // The log holds the echoed command and its three output lines, each naming "widget".
    const n = ((await logText()) ?? '').match(/widget/gi)?.length ?? 0;
    assert.ok(n >= 3, `${n} occurrences`);
    const count = page.locator('.log-search-count');
    await until('the matches', async () => (await count.textContent()) === `1 of ${n}`);
    assert.equal(await page.locator('pre.log mark.match').count(), n);
    assert.equal(await page.locator('pre.log mark.current').textContent(), 'widget');
    await search.press('Enter');
    assert.equal(await count.textContent(), `2 of ${n}`);
    assert.equal(await page.locator('pre.log mark.match').nth(1).getAttribute('class'), 'match current');
    for (let i = 2; i < n; i++) await page.getByRole('button', { name: 'Next match' }).click();
    assert.equal(await count.textContent(), `${n} of ${n}`);
    await page.getByRole('button', { name: 'Next match' }).click();
    assert.equal(await count.textContent(), `1 of ${n}`, 'wraps around');
    await search.press('Shift+Enter');
    assert.equal(await count.textContent(), `${n} of ${n}`);
    await shot('volunteer-log-search');
    await search.fill('no such text');
    assert.equal(await count.textContent(), 'No matches');
    assert.equal(await page.getByRole('button', { name: 'Previous match' }).isDisabled(), true);

    await open('#/history', 'History');
    const history = page.getByRole('table', { name: 'Builds run on this computer, newest first' });
    await until('the re-run, newest first', async () => /flakyFailurere-run here of local #\d+/.test(await history.locator('tbody tr').first().textContent() ?? ''));
    assert.equal(await history.locator('tbody tr').count(), 4, 'ticker, flaky, sleeper and the re-run');
    await page.getByLabel('Builder').selectOption('ticker');
    await until('filtered', async () => (await history.locator('tbody tr').count()) === 1);
    await shot('volunteer-history');
    assert.match((await cli('history', '--data', dataDir)).out, /\tflaky\tbuild \d+\.1\tfailure/);
  });

  test('keyboard and labels: every control has a name, Tab reaches the actions', async () => {
    for (const [hash, heading] of [['#/', 'This computer'], ['#/limits', 'Limits'], ['#/history', 'History'], ['#/results', 'Results by builder']] as const) {
      await open(hash, heading);
      await page.waitForTimeout(300);
      const unnamed = await page.evaluate(`[...document.querySelectorAll('input, select, textarea, button, a[href]')].filter((el) => {
        const labelled = (el.labels && el.labels.length > 0) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
        return !labelled && !(el.textContent || '').trim();
      }).map((el) => el.outerHTML.slice(0, 80))`) as string[];
      assert.deepEqual(unnamed, [], `unnamed controls on ${hash}`);
    }
    await open('#/', 'This computer');
    await page.reload();
    await page.getByRole('button', { name: 'Pause builds' }).waitFor();
    await page.locator('body').focus();
    const seen: string[] = [];
    for (let i = 0; i < 20; i++) {
      await page.keyboard.press('Tab');
      seen.push(await page.evaluate('document.activeElement?.textContent?.trim() ?? ""') as string);
    }
    assert.ok(seen.includes('Pause builds'), `Tab order: ${seen.join(' | ')}`);
    assert.ok(seen.includes('Snooze for 1 hour'));
    assert.equal(seen[0], 'Skip to content');
  });

  test('projects and what this computer gave work in the browser too (crowdbake ui): a bad join link gets its reason', async () => {
    await open('#/projects', 'Projects');
    // This agent was started with --master: no project joined in DATA/projects.
    await page.getByText('No project joined yet.').waitFor();
    await page.getByLabel('Join link').fill('crowdbake://join?master=ftp://example.org');
    await page.getByRole('button', { name: 'Join' }).click();
    await page.getByRole('alert').filter({ hasText: 'Could not join' }).waitFor();
    assert.match(await page.getByRole('alert').filter({ hasText: 'Could not join' }).textContent() ?? '', /http or https|http\(s\)|master/);
    // The agent's 409 for that link is the expected answer; Chromium logs it as a failed resource.
    for (let i = errors.length - 1; i >= 0; i--) if (/status of 409/.test(errors[i]!)) errors.splice(i, 1);
    await open('#/gave', 'What this computer gave');
    assert.match(await page.locator('main').textContent() ?? '', /Nothing yet|Builds per day/);
  });

  test('no JavaScript errors on any page', () => {
    // The sign-in test loads the page before signing in: its status reads are refused (401).
    const refused = 'console: Failed to load resource: the server responded with a status of 401 (Unauthorized)';
    assert.deepEqual(errors.filter((e) => e !== refused), []);
  });
});
