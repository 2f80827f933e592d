import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView, WorkerView } from '../protocol/api.js';
import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';
import { WORKER_FEATURES_HEADER } from '../protocol/worker-features.js';
import { CLI, cleanup, tempDir, testMaster, until, workerProcess } from './helpers/cluster.js';

// Drain, for every worker (cloud or not): real master, real `crowdbake worker` processes.

/** A build that runs until the test creates `go` (so nothing ends before the test has looked). */
const builder = (go: string) => `requires: { executor: host }\nsteps:\n  - run: "echo begin; while [ ! -e ${go} ]; do sleep 0.1; done; echo end"\n`;
const goFile = (t: { after(f: () => void): void }) => {
  const dir = tempDir('drain-go');
  t.after(() => cleanup(dir));
  const go = join(dir, 'go');
  return { go, release: () => writeFileSync(go, '') };
};
const exitOf = (child: ReturnType<typeof workerProcess>) => new Promise<number | null>((ok) => {
  if (child.exitCode !== null) ok(child.exitCode);
  else child.once('exit', (code) => ok(code));
});
const worker = async (m: Awaited<ReturnType<typeof testMaster>>, name: string, t: { after(f: () => void): void }) => {
  const data = tempDir(`drain-${name}`);
  t.after(() => cleanup(data));
  const child = workerProcess(m.url, await m.token(name), data, ['--executor', 'host', '--idle-source', 'none']);
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await until(`${name} to connect`, async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === name)?.connected);
  return child;
};
const running = (m: Awaited<ReturnType<typeof testMaster>>, id: number) => until(`build ${id} to run`, async () => {
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  return log.includes('begin') ? log : null;
});

/** A master, a real worker `vol` on it, and a build running there until `gate.release()`. */
async function slowBuildRunning(t: { after(f: () => unknown): void }) {
  const gate = goFile(t);
  const m = await testMaster({ slow: builder(gate.go) });
  t.after(() => m.close());
  const w = await worker(m, 'vol', t);
  const id = await m.force('slow');
  await running(m, id);
  return { gate, m, w, id };
}

test('SIGTERM drains a worker: the master shows it draining and gives it nothing new, its build finishes on the same attempt, and it exits 0', async (t) => {
  const { gate, m, w, id } = await slowBuildRunning(t);
  w.kill('SIGTERM');
  const view = await until('the worker to show draining', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((x) => x.name === 'vol' && x.state === 'draining'));
  assert.equal(view.accepting, false);
  assert.match(view.reason, /^draining: SIGTERM received/);
  const next = await m.force('slow');
  gate.release();
  const b = await m.waitFinished(id, 60_000);
  assert.equal(b.result, 'success');
  assert.equal(b.attempt, 1);
  assert.equal(await exitOf(w), 0);
  assert.match(w.output(), /draining \(SIGTERM received\): finishing 1 build\(s\), taking no new ones/);
  const left = await m.get<BuildView>(`/api/v1/builds/${next}`);
  assert.equal(left.state, 'queued', 'the draining worker took nothing new');
  assert.equal(left.attempt, 0);
});

test('a second signal gives the build back at once: requeued as an infrastructure retry (maxAttempts: 1, still no failure), it finishes elsewhere', async (t) => {
  const dir = tempDir('drain-now');
  t.after(() => cleanup(dir));
  const gate = goFile(t);
  const m0 = await testMaster({ slow: builder(gate.go) }, { dir });
  await m0.close();
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), 'maxAttempts: 1\n');
  const m = await testMaster({}, { dir });
  t.after(() => m.close());
  const w = await worker(m, 'first', t);
  const id = await m.force('slow');
  await running(m, id);
  w.kill('SIGTERM');
  await until('draining', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((x) => x.name === 'first')?.state === 'draining');
  w.kill('SIGTERM');
  assert.equal(await exitOf(w), 0);
  const requeued = await until('the build to be queued again', async () => {
    const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return b.state === 'queued' ? b : null;
  });
  assert.match(requeued.message ?? '', /worker first is draining \(SIGTERM received\); an infrastructure retry \(1\), not counted as a failed attempt/);
  gate.release();
  await worker(m, 'second', t);
  const b = await m.waitFinished(id, 60_000);
  assert.equal(b.result, 'success');
  assert.equal(b.worker, 'second');
  assert.equal(b.attempt, 2);
});

test('POST /api/v1/workers/NAME/drain (the dashboard\'s): admin only, 404 for no such worker; the worker finishes its build and exits', async (t) => {
  const { gate, m, w, id } = await slowBuildRunning(t);
  const post = (name: string, auth: string | null, body = '{}') => fetch(`${m.url}/api/v1/workers/${name}/drain`, {
    method: 'POST', body, headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${auth}` } : {}) },
  });
  assert.equal((await post('vol', null)).status, 401);
  assert.equal((await post('nobody', m.adminToken)).status, 404);
  const bad = await post('vol', m.adminToken, '{"now":"yes"}');
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: string }).error, /now/);
  const r = await post('vol', m.adminToken);
  assert.equal(r.status, 202);
  assert.equal((await m.get<WorkerView[]>('/api/v1/workers')).find((x) => x.name === 'vol')?.state, 'draining');
  gate.release();
  const b = await m.waitFinished(id, 60_000);
  assert.equal(b.result, 'success');
  assert.equal(b.attempt, 1);
  assert.equal(await exitOf(w), 0);
  assert.match(w.output(), /the master asks this worker to leave \(the admin asked it to leave after its builds\)/);
});

test('crowdbake drain (the CLI, through the local control API) drains the local worker; --now gives the build back', async (t) => {
  const gate = goFile(t);
  const m = await testMaster({ slow: builder(gate.go) });
  t.after(() => m.close());
  const data = tempDir('drain-cli');
  t.after(() => cleanup(data));
  const w = workerProcess(m.url, await m.token('vol'), data, ['--executor', 'host', '--idle-source', 'none']);
  t.after(() => { if (w.exitCode === null) w.kill('SIGKILL'); });
  const id = await m.force('slow');
  await running(m, id);
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, 'drain', ...args], { encoding: 'utf8' });
  const offline = cli('--data', join(data, 'nothing-here'));
  assert.equal(offline.status, 1);
  assert.match(offline.stderr, /no agent is running/);
  const r = cli('--data', data);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /draining: the worker finishes its builds/);
  assert.equal((await m.get<WorkerView[]>('/api/v1/workers')).find((x) => x.name === 'vol')?.state, 'draining');
  const now = cli('--data', data, '--now');
  assert.equal(now.status, 0, now.stderr);
  assert.equal(await exitOf(w), 0);
  const b = await until('the build to be queued again', async () => {
    const v = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return v.state === 'queued' ? v : null;
  });
  assert.match(b.message ?? '', /worker vol is draining \(crowdbake drain\); an infrastructure retry/);
});

/** A protocol-1 worker as a raw WebSocket (it has no `drain` message), or one announcing `drain` in its upgrade request. */
async function oldWorker(m: Awaited<ReturnType<typeof testMaster>>, name: string, announce: string | null) {
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`, announce === null ? {} : { headers: { [WORKER_FEATURES_HEADER]: announce } });
  const inbox: { type: string; buildId?: number; attempt?: number }[] = [];
  const closed = new Promise<{ code: number; reason: string }>((ok) => ws.on('close', (code, reason) => ok({ code, reason: reason.toString() })));
  ws.on('message', (d) => inbox.push(JSON.parse(d.toString()) as { type: string }));
  ws.on('error', () => undefined);
  await new Promise((ok) => ws.once('open', ok));
  const caps = { os: 'old', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1 << 30, diskBytes: 1 << 30, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false };
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, name, token: await m.token(name), agentVersion: 'old', capabilities: caps, accepting: true, reason: '' }));
  await until(`${name}'s welcome`, () => inbox.find((f) => f.type === 'welcome'));
  return { ws, inbox, closed, send: (x: Record<string, unknown>) => ws.send(JSON.stringify(x)) };
}
const drainPost = (m: Awaited<ReturnType<typeof testMaster>>, name: string, now: boolean) => fetch(`${m.url}/api/v1/workers/${name}/drain`, {
  method: 'POST', body: JSON.stringify({ now }), headers: { 'content-type': 'application/json', authorization: `Bearer ${m.adminToken}` },
});

test('a protocol-1 worker is never sent drain (it cannot decode it): it gets nothing new, and its connection is closed with 4409 once its build is done, or at once with now', async (t) => {
  const m = await testMaster({ one: 'requires: { executor: host }\nsteps:\n  - run: "true"\n' });
  t.after(() => m.close());
  const old = await oldWorker(m, 'old', null);
  const id = await m.force('one');
  const a = await until('the assignment', () => old.inbox.find((f) => f.type === 'assign' && f.buildId === id));
  assert.equal((await drainPost(m, 'old', false)).status, 202);
  assert.equal((await m.get<WorkerView[]>('/api/v1/workers')).find((x) => x.name === 'old')?.state, 'draining');
  const next = await m.force('one');
  // Its build goes on; the frame after the drain is still taken (the socket is open).
  old.send({ type: 'accepted', buildId: id, attempt: a.attempt });
  old.send({ type: 'state', buildId: id, attempt: a.attempt, state: 'finished', result: 'success', message: null });
  const closed = await old.closed;
  assert.equal(closed.code, 4409, 'the one close code an old worker does not reconnect after');
  assert.match(closed.reason, /^drained: the admin asked it to leave after its builds/);
  assert.ok(!old.inbox.some((f) => f.type === 'drain'), 'no drain frame reached it');
  assert.ok(!old.inbox.some((f) => f.type === 'error'), 'nothing it could not decode');
  assert.equal((await m.waitFinished(id, 10_000)).result, 'success');
  assert.ok(!old.inbox.some((f) => f.type === 'assign' && f.buildId === next), 'the drained worker took nothing new');

  // With now: its build is given back as an infrastructure retry and the connection closed at once.
  const old2 = await oldWorker(m, 'old2', null);
  const a2 = await until('the assignment', () => old2.inbox.find((f) => f.type === 'assign' && f.buildId === next));
  assert.equal((await drainPost(m, 'old2', true)).status, 202);
  const closed2 = await old2.closed;
  assert.equal(closed2.code, 4409);
  assert.match(closed2.reason, /^drained: the admin asked it to stop now/);
  assert.ok(old2.inbox.some((f) => f.type === 'cancel' && f.buildId === next && f.attempt === a2.attempt));
  assert.ok(!old2.inbox.some((f) => f.type === 'drain'));
  const b = await until('requeued', async () => { const v = await m.get<BuildView>(`/api/v1/builds/${next}`); return v.state === 'queued' ? v : null; });
  assert.match(b.message ?? '', /an infrastructure retry/);

  // One that announces drain in its upgrade request is sent the message, and stays connected to finish.
  const told = await oldWorker(m, 'told', 'drain');
  assert.equal((await drainPost(m, 'told', false)).status, 202);
  await until('the drain message', () => told.inbox.find((f) => f.type === 'drain'));
  assert.equal(told.ws.readyState, WebSocket.OPEN);
  told.ws.close();
});
