// [crowd] The dashboard's Contributors page and the Workers page's invitations and trust
// actions, in Debian's Chromium (playwright-core) against a real master with real builds:
// volunteers join over POST /api/v1/join, run host-executor agents, and build a replicated
// builder, so the credit, the verdicts and the capacity samples the charts draw are the
// master's own. Screenshots go to a temp dir, or to $CROWDBAKE_SCREENSHOTS
// (scripts/screenshots.mjs points it at docs/screenshots).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { BuildView, CapacityBucketView, CreditDayView, InviteView, VolunteerView, WorkerView } from '../protocol/api.js';
import type { WorkerHandle } from '../worker/agent.js';
import { tempDir, type TestMaster } from './helpers/cluster.js';
import { admin, cleanup, crowdMaster, identity, join, joinedWorker, until } from './helpers/crowd.js';

const CHROMIUM = process.env.CROWDBAKE_CHROMIUM ?? '/usr/bin/chromium';
const STATIC_DIR = fileURLToPath(new URL('../renderer/', import.meta.url));

// Each replica burns a little CPU in the shell, then writes the same artifact everywhere.
const BUILDERS = {
  replicated: `
description: Built twice, by different volunteers
requires: { executor: host }
verify: { replicas: 2, owners: distinct }
steps:
  - run: i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; echo same > out.txt
artifacts: [out.txt]
`,
};

/** Pixels of a chart's canvas whose colour leans to one channel (the series' colour), not grey axes and grid. */
async function colouredPixels(page: Page, chart: string, channel: 'blue' | 'green'): Promise<number> {
  // A string, evaluated in the page (this file is compiled without the DOM's types).
  const test = channel === 'blue' ? 'b > r + 60 && b > g + 30' : 'g > r + 40 && g > b + 20';
  return page.evaluate(`(() => {
    const canvas = document.querySelector('figure[data-chart="${chart}"] canvas');
    if (!canvas || canvas.width === 0) return -1;
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      const r = d[i], g = d[i + 1], b = d[i + 2];
      if (d[i + 3] >= 128 && ${test}) n++;
    }
    return n;
  })()`);
}

describe('crowd dashboard', { timeout: 180_000 }, () => {
  const dirs: string[] = [];
  const workers: WorkerHandle[] = [];
  let m: TestMaster;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let shots: string;
  const errors: string[] = [];
  const requested: string[] = [];
  const ids: Record<string, string> = {};

  const shot = (name: string) => page.screenshot({ path: joinPath(shots, `${name}.png`), fullPage: true });
  const volunteers = async () => (await admin<VolunteerView[]>(m, 'GET', '/api/v1/volunteers')).body;
  const invites = async () => (await admin<InviteView[]>(m, 'GET', '/api/v1/invites')).body;

  before(async () => {
    assert.ok(existsSync(joinPath(STATIC_DIR, 'index.html')), `the dashboard is not built in ${STATIC_DIR} (run npm run build)`);
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
    shots = process.env.CROWDBAKE_SCREENSHOTS ?? tempDir('crowd-shots');
    if (!process.env.CROWDBAKE_SCREENSHOTS) dirs.push(shots);
    mkdirSync(shots, { recursive: true });
    m = await crowdMaster(BUILDERS, 'title: Hello farm\nenrollment: { mode: open, joinsPerHour: 100 }\ntrust: { promoteAfter: 3 }\n', dirs, { capacitySampleMs: 100, staticDir: STATIC_DIR });
    // Ada, Bob and Carol build; Carol asked not to be listed; Dan is listed but has no worker running.
    for (const [name, listed, runs] of [['Ada', true, true], ['Bob', true, true], ['Carol', false, true], ['Dan', true, false]] as const) {
      const j = await join(m, { worker: `${name.toLowerCase()}-pc`, who: identity(), displayName: name, listed });
      assert.equal(j.status, 201, JSON.stringify(j.body));
      ids[name] = j.body.volunteer.id;
      if (runs) workers.push(await joinedWorker(m, j.token, dirs));
    }
    await until('three workers connected', async () => (await m.get<WorkerView[]>('/api/v1/workers')).filter((w) => w.connected).length === 3);
    for (const id of [await m.force('replicated'), await m.force('replicated')]) {
      await until(`the verdict of build ${id}`, async () => {
        const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
        return b.verification?.verdict === 'verified';
      }, 60_000);
    }
    await until('capacity samples', async () => (await m.get<CapacityBucketView[]>('/api/v1/capacity')).some((b) => b.samples > 0));

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: m.url });
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(`console: ${msg.text()}`); });
    page.on('request', (r) => requested.push(new URL(r.url()).pathname));
  });

  after(async () => {
    await browser?.close();
    for (const w of workers) await w.close();
    await m?.close();
    cleanup(...dirs);
  });

  test('the Contributors page and its chart library load only when it is opened', async () => {
    await page.goto(`${m.url}/#/`);
    await page.getByRole('heading', { level: 1, name: 'Builders' }).waitFor();
    assert.ok(requested.some((p) => p === '/app.js'), requested.join(' '));
    assert.ok(!requested.some((p) => p.includes('contributors-page')), `fetched before it was opened: ${requested.join(' ')}`);
    // app.js is a small entry (renderer/src/boot.ts); it preloads the dashboard's main chunk
    // itself, after its first requests, so index.html names no other script to hold them up.
    const html = await (await fetch(`${m.url}/`)).text();
    assert.deepEqual([...html.matchAll(/<script[^>]*src="([^"]+)"/g)].map((x) => x[1]), ['/app.js'], html);
    assert.ok(requested.some((p) => /^\/chunks\/main-[A-Z0-9]+\.js$/.test(p)), `the dashboard's main chunk was not fetched: ${requested.join(' ')}`);
    // Nor is uPlot in what the first page loaded (its code names the legend's class, u-legend).
    const scripts = requested.filter((p) => p.endsWith('.js'));
    assert.ok(scripts.length > 0);
    for (const p of scripts) assert.doesNotMatch(await (await fetch(`${m.url}${p}`)).text(), /u-legend/, `uPlot is in ${p}, loaded by the first page`);
    await page.getByRole('link', { name: 'Contributors' }).click();
    await page.getByRole('heading', { level: 1, name: 'Contributors' }).waitFor();
    const chunk = requested.find((p) => /^\/chunks\/contributors-page-[A-Z0-9]+\.js$/.test(p));
    assert.ok(chunk, `no chunk fetched for the page: ${requested.join(' ')}`);
    const res = await fetch(`${m.url}${chunk}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/javascript/);
    // uPlot comes with the page: in its chunk, or in a chunk only the lazy pages import (the
    // volunteer's "what this computer gave" page shares it), fetched when the page opened.
    const text = await res.text();
    const imported = [...text.matchAll(/from"\.\/(chunk-[A-Z0-9]+\.js)"/g)].map((x) => `/chunks/${x[1]}`);
    const bodies = [text, ...await Promise.all(imported.map(async (p) => (await fetch(`${m.url}${p}`)).text()))];
    const holder = [chunk, ...imported][bodies.findIndex((b) => /u-legend/.test(b))];
    assert.ok(holder, `uPlot is in none of ${[chunk, ...imported].join(', ')}`);
    assert.ok(!scripts.includes(holder), `${holder} holds uPlot and is loaded by the first page`);
  });

  test('a Contributors chunk that cannot be fetched says so, with a reload button, and the rest of the dashboard stays', async () => {
    const other = await context.newPage();
    try {
      await other.route(/\/chunks\/contributors-page-/, (r) => r.abort('connectionrefused'));
      await other.goto(`${m.url}/#/contributors`);
      await other.getByRole('alert').getByText('This page could not be loaded').waitFor();
      await other.getByRole('button', { name: 'Reload' }).waitFor();
      await other.getByRole('link', { name: 'Builders' }).click();
      await other.getByRole('heading', { level: 1, name: 'Builders' }).waitFor();
    } finally {
      await other.close();
    }
  });

  test('charts of builds and CPU hours per day, farm and volunteer, and capacity by hour of the week, from the master\'s data', async () => {
    const farm = await m.get<CreditDayView[]>('/api/v1/credit');
    const total = farm.reduce((a, d) => a + d.builds, 0);
    assert.equal(total, 4, 'two builds of two replicas each');
    await page.goto(`${m.url}/#/contributors`);
    const builds = page.locator('figure[data-chart="builds-per-day"]');
    await builds.getByText(`${total} builds in the last 90 days`).waitFor();
    await until('the charts drawn', async () => (await colouredPixels(page, 'builds-per-day', 'blue')) > 0);
    assert.ok((await colouredPixels(page, 'capacity', 'blue')) > 0, 'the capacity chart draws the samples');
    // The workers reported the CPU time of their builds: the CPU chart has its bar.
    assert.ok(farm.at(-1)!.cpuMs > 0, `the farm's CPU time today: ${farm.at(-1)!.cpuMs} ms`);
    assert.ok((await colouredPixels(page, 'hours-per-day', 'green')) > 0, 'the CPU hours chart draws today\'s bar');
    assert.equal(await page.locator('figure .uplot canvas').count(), 3);
    // The numbers behind the chart: today's row equals the master's.
    const today = farm[farm.length - 1]!;
    await builds.locator('summary').click();
    const row = builds.getByRole('row', { name: new RegExp(`^${today.day}`) });
    assert.deepEqual((await row.locator('td').allTextContents()).slice(0, 1), [String(today.builds)]);
    const sampled = (await m.get<CapacityBucketView[]>('/api/v1/capacity')).filter((b) => b.samples > 0).length;
    const shown = Number(/(\d+) of 168 hours sampled/.exec(await page.locator('figure[data-chart="capacity"] figcaption').textContent() ?? '')?.[1]);
    assert.ok(shown >= 1 && Math.abs(shown - sampled) <= 1, `${shown} hours shown, ${sampled} sampled`);
    await page.getByText('last 3 replicated results all agreed').waitFor();
    await shot('contributors');

    // One volunteer: the chart follows the choice; Dan, with no builds, draws no bars.
    const ada = (await m.get<VolunteerView[]>('/api/v1/volunteers')).find((v) => v.displayName === 'Ada')!;
    await page.getByLabel('Show').selectOption({ label: 'Ada' });
    await page.waitForURL(/volunteer=/);
    await builds.getByText(`Ada: ${ada.credit.builds} build`).waitFor();
    if (ada.credit.builds > 0) await until('Ada\'s bars', async () => (await colouredPixels(page, 'builds-per-day', 'blue')) > 0);
    await shot('contributors-volunteer');
    await page.getByLabel('Show').selectOption({ label: 'Dan' });
    await builds.getByText('Dan: 0 builds').waitFor();
    await until('Dan\'s chart redrawn', async () => (await colouredPixels(page, 'builds-per-day', 'blue')) === 0);

    // Live: a build that finishes while the page is open shows without a reload.
    await page.getByLabel('Show').selectOption({ label: 'The whole farm' });
    await builds.getByText(`${total} builds in the last 90 days`).waitFor();
    const more = await m.force('replicated');
    await until(`the verdict of build ${more}`, async () => (await m.get<BuildView>(`/api/v1/builds/${more}`)).verification?.verdict === 'verified', 60_000);
    await builds.getByText(`${total + 2} builds in the last 90 days`).waitFor();
    assert.deepEqual(errors, []);
  });

  test('a volunteer who asked not to be listed is not on the page, though the admin sees them and the farm counts their work', async () => {
    const all = await volunteers();
    assert.ok(all.some((v) => v.displayName === 'Carol' && v.listed === false));
    await page.goto(`${m.url}/#/contributors`);
    const table = page.locator('table.contributors-table');
    await table.getByRole('row', { name: /Ada/ }).waitFor();
    const names = await table.locator('tbody th').allTextContents();
    assert.deepEqual(names.sort(), ['Ada', 'Bob', 'Dan']);
    assert.doesNotMatch(await page.locator('main').textContent() ?? '', /Carol/);
    assert.equal(await page.locator('#contributor-pick option', { hasText: 'Carol' }).count(), 0);
    // Her id in the address shows the farm, not her.
    await page.goto(`${m.url}/#/contributors?volunteer=${ids.Carol}`);
    await page.getByText(`No listed volunteer has the id ${ids.Carol}`).waitFor();
  });

  test('Workers page: the admin creates an invitation, copies its join link, a worker joins with it, and the admin revokes it', async () => {
    await page.goto(`${m.url}/#/workers`);
    await page.getByRole('heading', { level: 1, name: 'Workers' }).waitFor();
    await page.getByRole('button', { name: 'Manage invitations and volunteers' }).click();
    await page.getByRole('textbox', { name: 'Admin token' }).fill(m.adminToken);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { level: 2, name: 'Invitations' }).waitFor();

    // A bad expiry is refused in words, and nothing is created.
    const form = page.getByRole('form', { name: 'New invitation' });
    await form.getByLabel('Expires after').fill('soon');
    await form.getByRole('button', { name: 'Create invitation' }).click();
    await form.getByRole('alert').getByText('"soon" is not a duration').waitFor();
    assert.equal((await invites()).length, 0);

    await form.getByLabel('Labels (granted)').fill('linux, big');
    await form.getByLabel('Uses').fill('2');
    await form.getByLabel('Expires after').fill('1h');
    await form.getByLabel('Note').fill('for the sprint');
    await form.getByRole('button', { name: 'Create invitation' }).click();
    const link = await page.locator('#join-link-text').inputValue();
    assert.match(link, /^crowdbake:\/\/join\?master=.+&code=/);
    await page.getByRole('button', { name: 'Copy link' }).click();
    await page.getByText('Copied.').waitFor();
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), link);
    await shot('workers-invitations');
    const [made] = await invites();
    assert.deepEqual([made!.labels, made!.maxUses, made!.note, made!.state], [['linux', 'big'], 2, 'for the sprint', 'active']);
    assert.ok(Date.parse(made!.expiresAt!) - Date.now() > 50 * 60_000);

    // The link works: a worker joins with its code and gets its grants.
    const code = new URL(link).searchParams.get('code')!;
    const j = await join(m, { worker: 'eve-pc', code, displayName: 'Eve' });
    assert.equal(j.status, 201, JSON.stringify(j.body));
    assert.deepEqual(j.body.labels, ['linux', 'big']);
    await page.reload();
    const inviteRow = page.locator('table.invites-table tbody tr', { hasText: made!.id });
    await inviteRow.getByText('1 / 2').waitFor();

    await inviteRow.getByRole('button', { name: `Revoke invitation ${made!.id}` }).click();
    await inviteRow.getByText('Revoked').waitFor();
    assert.equal((await invites())[0]!.state, 'revoked');
    const refused = await join(m, { worker: 'mallory-pc', code, displayName: 'Mallory' });
    assert.deepEqual([refused.status, refused.body.reason], [410, 'revoked']);
  });

  test('Workers page: the admin bans a volunteer with a reason; their worker is disconnected and the change shows with its reason', async () => {
    await page.goto(`${m.url}/#/workers`);
    const row = page.locator('table.volunteers-admin-table tbody tr', { hasText: 'Bob' });
    await row.waitFor();
    await row.getByLabel('Reason for changing Bob’s trust').fill('test: ran a miner');
    await row.getByRole('button', { name: 'Ban Bob' }).click();
    await row.locator('.badge', { hasText: 'Banned' }).waitFor();
    // From whatever Bob's trust was (the earlier tests' replicated builds may have earned it).
    const history = row.getByRole('list', { name: 'Trust history of Bob' });
    await history.getByRole('listitem').filter({ hasText: 'test: ran a miner' }).waitFor();
    assert.match(await history.innerText(), /: (New|Trusted) → Banned \(by a maintainer\) — test: ran a miner/);
    const bob = (await volunteers()).find((v) => v.displayName === 'Bob')!;
    assert.equal(bob.trust, 'banned');
    assert.equal(bob.trustEvents!.at(-1)!.reason, 'test: ran a miner');
    await until('Bob\'s worker disconnected', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'bob-pc')?.connected === false);

    // Promote Carol (unlisted: the admin sees her here), then the history has both reasons in order.
    const carol = page.locator('table.volunteers-admin-table tbody tr', { hasText: 'Carol' });
    await carol.getByText('not listed publicly').waitFor();
    await carol.getByLabel('Reason for changing Carol’s trust').fill('known contributor');
    await carol.getByRole('button', { name: 'Promote Carol' }).click();
    await carol.getByText('New → Trusted (by a maintainer) — known contributor').waitFor();
    assert.equal((await volunteers()).find((v) => v.displayName === 'Carol')!.trust, 'trusted');
    await shot('workers-volunteers');
    assert.deepEqual(errors, []);
  });
});
