import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import type { AgentStatus } from '../protocol/control-api.js';
import { startWorker } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster, until, workerProcess } from './helpers/cluster.js';

/** The CLI in its own process, asynchronously: the agent it talks to lives in this test's process. */
const cli = (...args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((ok) => {
  execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (e, out, err) => ok({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
});
const TICKER = `requires: { executor: host }\nsteps:\n  - run: "i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo all done"\n`;
const ticks = (log: string) => log.match(/^tick \d+$/gm)?.length ?? 0;

test('status without an agent says offline; with one it reports state, idle source, builds and limits', async (t) => {
  const dir = tempDir('w');
  t.after(() => cleanup(dir));
  assert.deepEqual(JSON.parse((await cli('status', '--json', '--data', dir)).out).state, 'offline');

  const m = await testMaster({ ticker: TICKER });
  const w = await startWorker({ master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } });
  t.after(async () => { await w.close(); await m.close(); });
  await until('connected', () => w.status().master.connected);
  const s = JSON.parse((await cli('status', '--json', '--data', dir)).out) as AgentStatus;
  assert.equal(s.state, 'idle');
  assert.equal(s.idleSource.name, 'none');
  assert.equal(s.preferences.when, 'always');
  assert.deepEqual(s.current, []);

  const id = await m.force('ticker');
  const busy = await until('building', async () => {
    const st = JSON.parse((await cli('status', '--json', '--data', dir)).out) as AgentStatus;
    return st.state === 'busy' ? st : null;
  });
  assert.deepEqual(busy.current.map((b) => [b.buildId, b.builder, b.frozen]), [[id, 'ticker', false]]);
  // The human form says the same (while the build still runs).
  await cli('pause', '--data', dir);
  assert.match((await cli('status', '--data', dir)).out, /building: +ticker \(build \d+\) — frozen/);
  await cli('resume', '--data', dir);
  await m.waitFinished(id, 30_000);
  assert.match((await cli('history', '--data', dir)).out, new RegExp(`\\tticker\\tbuild ${id}\\.1\\tsuccess`));
});

test('pause freezes the running build (the master shows frozen), resume thaws it; snooze says so', async (t) => {
  const dir = tempDir('w');
  const m = await testMaster({ ticker: TICKER });
  const w = await startWorker({ master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const log = (id: number) => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  const id = await m.force('ticker');
  await until('ticks', async () => ticks(await log(id)) >= 3);

  assert.match((await cli('pause', '--data', dir)).out, /^paused: paused by the volunteer/);
  await until('frozen on the master', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'frozen');
  const before = ticks(await log(id));
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(ticks(await log(id)), before, 'no progress while paused');
  const workers = await m.get<{ name: string; state: string; accepting: boolean; reason: string }[]>('/api/v1/workers');
  assert.deepEqual(workers.map((x) => [x.state, x.accepting, x.reason]), [['frozen', false, 'paused by the volunteer']]);

  assert.match((await cli('resume', '--data', dir)).out, /^busy: builds run whenever work is assigned/);
  const done = await m.waitFinished(id, 30_000);
  assert.equal(done.result, 'success');

  assert.match((await cli('pause', '--for', '1h', '--data', dir)).out, /^paused: snoozed for 1h0m more/);
  const second = await m.force('ticker');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${second}`)).state, 'queued', 'a snoozed worker takes no builds');
  await cli('resume', '--data', dir);
  assert.equal((await m.waitFinished(second, 30_000)).result, 'success');
});

test('limits change live, are validated, and persist across a restart of the agent', async (t) => {
  const dir = tempDir('w');
  const m = await testMaster({});
  const token = await m.token('w1');
  let w = await startWorker({ master: m.url, token, dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const r = await cli('limits', '--cpus', '2', '--memory', '1g', '--schedule', '22:00-07:00', '--idle-after', '5m', '--data', dir);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /caps: +cpus 2, memory 1\.0 GiB, disk any/);
  assert.match(r.out, /schedule: +22:00-07:00/);
  const bad = await cli('limits', '--schedule', 'tonight', '--data', dir);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--schedule "tonight" must be HH:MM-HH:MM/);
  // The API itself refuses bad values and a wrong secret.
  const { url, secret } = JSON.parse(readFileSync(join(dir, 'control.json'), 'utf8')) as { url: string; secret: string };
  const patch = (body: unknown, auth = secret) => fetch(`${url}/api/v1/preferences`, { method: 'PATCH', headers: { authorization: `Bearer ${auth}` }, body: JSON.stringify(body) });
  assert.equal((await patch({ cpus: -1 })).status, 400);
  assert.match(((await (await patch({ memory: 'lots' })).json()) as { error: string }).error, /memory: "lots" is not a size/);
  assert.equal((await patch({ cpus: 1 }, 'wrong')).status, 401);

  await w.close();
  w = await startWorker({ master: m.url, token, dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none' });
  const p = w.status().preferences;
  assert.deepEqual([p.cpus, p.memoryBytes, p.schedule, p.idleAfterMs, p.when], [2, 1024 ** 3, { start: '22:00', end: '07:00' }, 300_000, 'always']);
  await cli('pause', '--data', dir);
  await w.close();
  w = await startWorker({ master: m.url, token, dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none' });
  assert.equal(w.status().preferences.paused, true, 'a pause survives a restart');
});

test('a frozen build whose worker disappears is requeued and finishes elsewhere, counted once', async (t) => {
  const m = await testMaster({ ticker: TICKER });
  const dirA = tempDir('wa');
  const dirB = tempDir('wb');
  const a = workerProcess(m.url, await m.token('wa'), dirA, ['--executor', 'host', '--idle-source', 'none']);
  t.after(async () => { a.kill('SIGKILL'); await m.close(); cleanup(dirA, dirB); });
  const id = await m.force('ticker');
  await until('running on wa', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'running', 20_000);
  await until('wa control API', async () => (await cli('status', '--json', '--data', dirA)).out.includes('"busy"'));
  await cli('pause', '--data', dirA);
  await until('frozen', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'frozen');
  // A frozen build is not requeued while its worker is there.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'frozen');
  a.kill('SIGKILL');
  const b = await startWorker({ master: m.url, token: await m.token('wb'), dataDir: dirB, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } });
  t.after(() => b.close());
  const done = await m.waitFinished(id, 30_000);
  assert.deepEqual([done.result, done.worker, done.attempt], ['success', 'wb', 2]);
});

test('a build frozen longer than its builder allows is requeued elsewhere and the frozen copy dropped', async (t) => {
  const m = await testMaster({ ticker: `${TICKER}limits: { frozen: 1s }\n` });
  const dirA = tempDir('wa');
  const dirB = tempDir('wb');
  const a = await startWorker({ master: m.url, token: await m.token('wa'), dataDir: dirA, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } });
  t.after(async () => { await a.close(); await m.close(); cleanup(dirA, dirB); });
  const id = await m.force('ticker');
  await until('running', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'running');
  await cli('pause', '--data', dirA);
  const b = await startWorker({ master: m.url, token: await m.token('wb'), dataDir: dirB, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } });
  t.after(() => b.close());
  const done = await m.waitFinished(id, 30_000);
  assert.deepEqual([done.result, done.worker, done.attempt], ['success', 'wb', 2]);
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  assert.match(log, /frozen on worker wa for longer than 1s; build requeued/);
  await until('wa dropped its copy', () => a.running().length === 0);
});
