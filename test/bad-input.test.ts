import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { BuilderView } from '../protocol/api.js';
import { OLDEST_WORKER_PROTOCOL, OLDEST_WORKER_PROTOCOL_UNTIL, oldestAcceptedProtocol, PROTOCOL_VERSION, VersionInfoSchema } from '../protocol/version.js';
import { encodeLogFrame } from '../protocol/log-frame.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

const ECHO = `description: good version\nrequires: { executor: host }\nsteps:\n  - run: echo fine\n`;
const CAPS = { os: 'test', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1, diskBytes: 1, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false };

/** A raw socket to the worker endpoint that records what the master says and how it closes. */
async function rawSocket(url: string) {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/api/v1/worker`);
  const received: { type: string; message?: string; fatal?: boolean }[] = [];
  const closed = new Promise<number>((ok) => ws.on('close', (code) => ok(code)));
  ws.on('message', (d) => received.push(JSON.parse(d.toString())));
  ws.on('error', () => undefined);
  await new Promise((ok) => ws.once('open', ok));
  return { ws, received, closed };
}

const hello = (token: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, name: 'w1', token, agentVersion: 't', capabilities: CAPS, ...extra });

test('malformed frames get a clear error naming the problem; the master keeps serving', async (t) => {
  const m = await testMaster({ echo: ECHO });
  t.after(() => m.close());
  const s = await rawSocket(m.url);
  s.ws.send('this is not json');
  s.ws.send(JSON.stringify({ type: 'launch-missiles' }));
  s.ws.send(JSON.stringify({ type: 'log', buildId: 'seven', attempt: 1, data: 'x' }));
  s.ws.send(JSON.stringify({ type: 'log', buildId: 1, attempt: 1, data: 'x' }));
  // Log frames ("L<buildId> <attempt>\n<text>"): a header without its newline, a bad header, a
  // good one before hello; and a binary frame.
  s.ws.send('L1 1');
  s.ws.send('L1 one\nx');
  s.ws.send(encodeLogFrame(1, 1, 'x'));
  s.ws.send(Uint8Array.of(1, 2, 3));
  await until('eight answers', () => s.received.length >= 8);
  // Frames that decode are handled in order after the hello; refusals of undecodable ones come at once.
  const answers = s.received.map((r) => r.message!);
  for (const expected of [/^bad frame: not JSON/, /bad frame: type:/, /bad frame: buildId: /,
    /^bad frame: log frame header "L<buildId> <attempt>" has no newline/, /^bad frame: log frame header "L1 one" is not/,
    /^binary frames are not part of the protocol/]) {
    assert.equal(answers.filter((a) => expected.test(a)).length, 1, `${expected} in ${answers.join(' | ')}`);
  }
  assert.equal(answers.filter((a) => /"log" before a successful hello/.test(a)).length, 2, answers.join(' | '));
  assert.ok(s.received.every((r) => r.type === 'error' && r.fatal === false));
  // An oversized frame is refused by size, never parsed.
  s.ws.send('x'.repeat(5 * 1024 * 1024));
  assert.equal(await s.closed, 1009);
  const health = await fetch(`${m.url}/healthz`);
  assert.deepEqual([health.status, await health.json()], [200, { ok: true }]);
});

test('a wrong token, a token of another worker and a wrong protocol version are refused', async (t) => {
  const m = await testMaster({ echo: ECHO });
  t.after(() => m.close());
  const good = await m.token('w1');
  const other = await m.token('w2');
  const cases: [string, number, RegExp][] = [
    [hello('cbw1.w1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), 4401, /authentication failed: invalid token/],
    [hello('garbage'), 4401, /malformed token/],
    [hello(other), 4401, /belongs to worker "w2", not "w1"/],
    [hello(good, { protocol: PROTOCOL_VERSION + 1 }), 4426, new RegExp(`protocol version ${PROTOCOL_VERSION + 1} is not supported`)],
  ];
  for (const [frame, code, message] of cases) {
    const s = await rawSocket(m.url);
    s.ws.send(frame);
    assert.equal(await s.closed, code);
    assert.match(s.received[0]?.message ?? '', message);
    assert.equal(s.received[0]?.fatal, true);
  }
  // The right token still gets in.
  const s = await rawSocket(m.url);
  s.ws.send(hello(good));
  await until('welcome', () => s.received.length > 0);
  assert.equal(s.received[0]!.type, 'welcome');
  s.ws.close();
});

test('versions: the master states the worker protocols it accepts; the previous one is still served within the window, older ones are told to update', async (t) => {
  const m = await testMaster({ echo: ECHO });
  t.after(() => m.close());
  const v = VersionInfoSchema.parse(await (await fetch(`${m.url}/api/v1/version`)).json());
  assert.deepEqual(v.workerProtocols, { oldest: OLDEST_WORKER_PROTOCOL, newest: PROTOCOL_VERSION, oldestUntil: OLDEST_WORKER_PROTOCOL_UNTIL });
  assert.equal(OLDEST_WORKER_PROTOCOL, PROTOCOL_VERSION - 1, 'at least the previous protocol is accepted');
  assert.equal(oldestAcceptedProtocol(new Date(`${OLDEST_WORKER_PROTOCOL_UNTIL}T12:00:00Z`)), OLDEST_WORKER_PROTOCOL);
  assert.equal(oldestAcceptedProtocol(new Date(Date.parse(`${OLDEST_WORKER_PROTOCOL_UNTIL}T00:00:00Z`) + 2 * 86_400_000)), PROTOCOL_VERSION, 'after the window only the current one');
  const good = await m.token('w1');
  // A protocol-1 worker: welcomed in its own version, and its JSON log messages are taken.
  const old = await rawSocket(m.url);
  old.ws.send(hello(good, { protocol: PROTOCOL_VERSION - 1 }));
  await until('welcome (old)', () => old.received.length > 0);
  assert.deepEqual([old.received[0]!.type, (old.received[0] as { protocol?: number }).protocol], ['welcome', PROTOCOL_VERSION - 1]);
  old.ws.close();
  const older = await rawSocket(m.url);
  older.ws.send(hello(good, { protocol: OLDEST_WORKER_PROTOCOL - 1 }));
  assert.equal(await older.closed, 4426);
  assert.match(older.received[0]?.message ?? '', new RegExp(`protocol version ${OLDEST_WORKER_PROTOCOL - 1} is not supported; this master speaks ${OLDEST_WORKER_PROTOCOL} to ${PROTOCOL_VERSION} \\(update this worker\\)`));
});

test('a revoked token is refused and the worker stops retrying with a clear reason', async (t) => {
  const m = await testMaster({ echo: ECHO });
  const dir = tempDir('w');
  t.after(async () => { await m.close(); cleanup(dir); });
  const lines: string[] = [];
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none',
    master: m.url, token: 'cbw1.w9.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB', dataDir: dir, executor: 'host', labels: [],
    log: (l) => lines.push(l), backoff: { minMs: 10, maxMs: 50 },
  });
  await w.done;
  await w.close();
  assert.ok(lines.some((l) => /stopping: the master refused our token: authentication failed: invalid token/.test(l)), lines.join('\n'));
});

test('a broken builder file is reported with file, line and key; the last good version stays active', async (t) => {
  const m = await testMaster({ echo: ECHO });
  t.after(() => m.close());
  writeFileSync(join(m.configDir, 'builders', 'echo.yml'), 'description: broken now\nrequires: { executor: host }\nstepz:\n  - run: echo\n');
  const view = await until('the error to show', async () =>
    (await m.get<BuilderView[]>('/api/v1/builders')).find((b) => b.name === 'echo' && b.error));
  assert.match(view.error!, /builders\/echo\.yml:3:1: .*unknown key "stepz"/);
  assert.equal(view.description, 'good version');
  // The last good version still builds.
  const dir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); cleanup(dir); });
  const build = await m.waitFinished(await m.force('echo'), 20_000);
  assert.equal(build.result, 'success');
});

test('REST input errors: auth, bodies, unknown names, bad queries', async (t) => {
  const m = await testMaster({ echo: ECHO });
  t.after(() => m.close());
  const post = (path: string, body: string, auth?: string) => fetch(`${m.url}${path}`, {
    method: 'POST', body, headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
  });
  const expectError = async (r: Response, status: number, re: RegExp) => {
    assert.equal(r.status, status);
    assert.match(((await r.json()) as { error: string }).error, re);
  };
  await expectError(await post('/api/v1/builders/echo/builds', '{}'), 401, /Authorization: Bearer/);
  await expectError(await post('/api/v1/builders/echo/builds', '{}', 'Bearer nope'), 403, /wrong admin token/);
  const admin = `Bearer ${m.adminToken}`;
  await expectError(await post('/api/v1/builders/echo/builds', '{not json', admin), 400, /not JSON/);
  await expectError(await post('/api/v1/builders/echo/builds', '{"revision": 5}', admin), 400, /revision/);
  await expectError(await post('/api/v1/builders/echo/builds', '{"colour": "red"}', admin), 400, /colour/);
  await expectError(await post('/api/v1/builders/nope/builds', '{}', admin), 404, /no builder named "nope"/);
  await expectError(await fetch(`${m.url}/api/v1/builds?state=sideways`), 400, /state must be one of/);
  await expectError(await fetch(`${m.url}/api/v1/builds?limit=0`), 400, /limit must be/);
  await expectError(await fetch(`${m.url}/api/v1/builds/999`), 404, /no build 999/);
  await expectError(await post('/api/v1/builds/999/cancel', '', admin), 404, /no build 999/);
  // A queued build can be cancelled once; a second cancel conflicts.
  const r = await post('/api/v1/builders/echo/builds', '{"reason":"x"}', admin);
  const { id } = (await r.json()) as { id: number };
  assert.equal((await post(`/api/v1/builds/${id}/cancel`, '', admin)).status, 202);
  await expectError(await post(`/api/v1/builds/${id}/cancel`, '', admin), 409, /already finished/);
  const b = await m.get<{ state: string; result: string }>(`/api/v1/builds/${id}`);
  assert.deepEqual([b.state, b.result], ['finished', 'cancelled']);
});

test('failed logins are rate-limited per address and name: the right secret is refused too until the window passes', async (t) => {
  const m = await testMaster({ echo: ECHO });
  t.after(() => m.close());
  const good = await m.token('w1');
  for (let i = 0; i < 10; i++) {
    const s = await rawSocket(m.url);
    s.ws.send(hello('cbw1.w1.CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC'));
    assert.equal(await s.closed, 4401);
  }
  const s = await rawSocket(m.url);
  s.ws.send(hello(good));
  assert.equal(await s.closed, 4429);
  assert.match(s.received[0]?.message ?? '', /too many failed logins as "w1" from .*; try again in \d+s/);
  // The admin API likewise.
  const post = (auth: string) => fetch(`${m.url}/api/v1/builders/echo/builds`, { method: 'POST', headers: { authorization: `Bearer ${auth}` } });
  for (let i = 0; i < 10; i++) assert.equal((await post('wrong')).status, 403);
  const r = await post(m.adminToken);
  assert.equal(r.status, 429);
});
