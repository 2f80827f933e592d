import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chromium, type Browser } from 'playwright-core';
import type { BuildView } from '../protocol/api.js';
import type { DiffoscopeReport } from '../protocol/diffoscope-report.js';
import { startWorker, type WorkerHandle } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, type TestMaster } from './helpers/cluster.js';

/**
 * [provenance] Two real workers build the same revision; the artifact embeds the time it was
 * made, so the replicas disagree. The master runs Debian's diffoscope on the pair (in bwrap
 * when it is installed) and the build page shows the report and names the timestamp. A
 * master whose diffoscope command is not installed says so instead.
 */

const STAMPED = `
requires: { executor: host }
verify: { replicas: 2 }
steps:
  - run: printf 'hello\\nbuilt on %s\\n' "$(date -u '+%Y-%m-%d %H:%M:%S.%N')" > out.txt
artifacts: [out.txt]
`;
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const HAVE_DIFFOSCOPE = have('diffoscope');
const HAVE_BWRAP = have('bwrap');

async function twoWorkers(m: TestMaster, dirs: string[]): Promise<WorkerHandle[]> {
  const out: WorkerHandle[] = [];
  for (const name of ['r1', 'r2']) {
    const dir = tempDir('diffo-worker');
    dirs.push(dir);
    out.push(await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token(name), dataDir: dir, executor: 'host', labels: [], log: () => undefined }));
  }
  return out;
}

async function disagreed(m: TestMaster, id: number): Promise<BuildView> {
  const b = await until(`the verdict of build ${id}`, async () => {
    const v = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return v.verification && v.verification.verdict !== 'pending' ? v : null;
  }, 60_000);
  assert.equal(b.verification!.verdict, 'disagreed', JSON.stringify(b.verification));
  return b;
}

async function openBuildPage(browser: Browser, m: TestMaster, id: number, text: string) {
  const page = await browser.newPage();
  await page.goto(`${m.url}/#/builds/${id}`);
  await page.getByRole('heading', { name: 'Why the replicas differ' }).waitFor({ timeout: 30_000 });
  await page.getByText(text).first().waitFor({ timeout: 30_000 });
  return page;
}

const launch = () => chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

test('two replicas that differ only by an embedded timestamp: diffoscope runs on the master, the report and the build page name the timestamp', { skip: HAVE_DIFFOSCOPE ? false : 'diffoscope is not installed (apt-get install diffoscope-minimal)' }, async (t) => {
  const dirs: string[] = [];
  const m = await testMaster({ stamped: STAMPED });
  dirs.push(`${m.dataDir}/..`);
  const workers = await twoWorkers(m, dirs);
  let browser: Browser | null = null;
  t.after(async () => { await browser?.close(); for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });

  const id = await m.force('stamped');
  await disagreed(m, id);
  const r = await until('the diffoscope report', async () => {
    const d = await m.get<DiffoscopeReport>(`/api/v1/builds/${id}/diffoscope`);
    return d.state !== 'running' && d.state !== 'none' ? d : null;
  }, 120_000);
  assert.equal(r.state, 'done', r.message);
  assert.equal(r.artifact, 'out.txt');
  assert.deepEqual(r.workers.sort(), ['r1', 'r2']);
  // The report is diffoscope's: it names both files and the differing line, and nothing of the master's paths.
  assert.match(r.report, /^--- a\/out\.txt\n\+\+\+ b\/out\.txt\n/);
  assert.match(r.report, /^-built on \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+$/m);
  assert.ok(!r.report.includes(m.dataDir), 'the report does not name the master\'s data directory');
  assert.deepEqual(r.causes.map((c) => c.cause), ['timestamps']);
  assert.match(r.causes[0]!.removed, /^built on \d{4}-/);
  assert.match(r.message, /likely causes: timestamps/);
  assert.match(r.sandbox, HAVE_BWRAP ? /^bwrap \(no network/ : /^none \(bwrap is not installed\)/);
  // The replica's own build id shows the same group's report.
  const other = (await m.get<BuildView>(`/api/v1/builds/${id}`)).verification!.members.find((x) => x.id !== id)!.id;
  assert.equal((await m.get<DiffoscopeReport>(`/api/v1/builds/${other}/diffoscope`)).report, r.report);

  browser = await launch();
  const page = await openBuildPage(browser, m, id, 'likely causes: timestamps');
  const causes = await page.getByRole('list', { name: 'Likely causes' }).innerText();
  assert.match(causes, /timestamps \(1×\): embedded timestamps/);
  assert.match(causes, /- built on \d{4}-\d{2}-\d{2}/);
  assert.match(await page.locator('pre.diffoscope-report').innerText(), /\+built on \d{4}-/);
});

test('without diffoscope on the master the group\'s report says it is not installed, and so does the build page', async (t) => {
  const dirs: string[] = [];
  // Stands in for a master without the package: the command it looks for is not on PATH.
  const m = await testMaster({ stamped: STAMPED }, { diffoscope: { command: 'crowdbake-test-no-diffoscope' } });
  dirs.push(`${m.dataDir}/..`);
  const workers = await twoWorkers(m, dirs);
  let browser: Browser | null = null;
  t.after(async () => { await browser?.close(); for (const w of workers) await w.close(); await m.close(); cleanup(...dirs); });
  const id = await m.force('stamped');
  await disagreed(m, id);
  const r = await until('the report', async () => {
    const d = await m.get<DiffoscopeReport>(`/api/v1/builds/${id}/diffoscope`);
    return d.state !== 'none' && d.state !== 'running' ? d : null;
  });
  assert.equal(r.state, 'unavailable');
  assert.match(r.message, /diffoscope is not installed on the master \(Debian: apt-get install diffoscope-minimal\)/);
  assert.equal(r.report, '');
  browser = await launch();
  await openBuildPage(browser, m, id, 'diffoscope is not installed on the master');
});
