import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { startWorker } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster, until, type TestMaster } from './helpers/cluster.js';

const ECHO = `requires: { executor: host }\nsteps:\n  - run: echo fine\n`;
/** 20 MB of output in 200 lines of 100 KB. */
const LOUD = `requires: { executor: host }\nsteps:\n  - run: "i=0; while [ $i -lt 200 ]; do head -c 100000 /dev/zero | tr '\\\\0' x; echo \\" line $i\\"; i=$((i+1)); done"\n`;
const CAPS = { os: 'test', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1, diskBytes: 1, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false };

async function masterWith(yml: string, builders: Record<string, string>): Promise<TestMaster & { dir: string }> {
  const dir = tempDir('adv-http');
  mkdirSync(join(dir, 'config'), { recursive: true });
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), yml);
  return Object.assign(await testMaster(builders, { dir }), { dir });
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/**
 * A raw events subscriber that reads the handshake answer and then never reads again (the
 * kernel buffers fill, then the master's). `status` is the answer's status line.
 */
function silentSubscriber(url: string, opts: { host?: string; localAddress?: string; path?: string } = {}): Promise<{ socket: Socket; status: string; head: string }> {
  const port = portOf(url);
  return new Promise((ok, fail) => {
    const socket = connect({ host: '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    socket.once('error', fail);
    socket.once('connect', () => socket.write(
      `GET ${opts.path ?? '/api/v1/events'} HTTP/1.1\r\nHost: ${opts.host ?? `127.0.0.1:${port}`}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'));
    socket.once('data', (d: Buffer) => {
      socket.pause();
      const head = d.toString('latin1');
      ok({ socket, status: head.split('\r\n')[0]!, head });
    });
  });
}

/** Reads everything the socket has and will send within the wait, as latin1 text. */
function drain(socket: Socket): { text: () => string } {
  let text = '';
  socket.on('data', (d: Buffer) => { text += d.toString('latin1'); });
  socket.resume();
  return { text: () => text };
}

test('300 event subscribers that never read while a 20 MB-log build runs: memory stays bounded, and a lagging one misses log events and is told to resync', async (t) => {
  const m = await masterWith('eventSubscribers: { max: 1000, perAddress: 400, stuckAfter: 1h }\n', { loud: LOUD, echo: ECHO });
  const wdir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: wdir, executor: 'host', labels: [], log: () => undefined });
  const subs: Socket[] = [];
  t.after(async () => { for (const s of subs) s.destroy(); await w.close(); await m.close(); cleanup(m.dir, wdir); });
  for (let i = 0; i < 300; i++) {
    const s = await silentSubscriber(m.url);
    assert.match(s.status, / 101 /, `subscriber ${i}: ${s.status}`);
    subs.push(s.socket);
  }
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
  const build = await m.waitFinished(await m.force('loud'), 240_000);
  clearInterval(sampler);
  assert.equal(build.result, 'success');
  const grew = (peak - before) / 1048576;
  console.log(`# master+worker rss grew by ${grew.toFixed(0)} MiB with 300 silent subscribers (was 2.6 GiB before events were encoded once and capped)`);
  // 300 subscribers × 20 MB would be 6 GB; each event is one shared buffer, and laggers get no more.
  assert.ok(grew < 300, `rss grew by ${grew.toFixed(0)} MiB`);

  // One of them reads again: it missed most of the log (the attack delivered 20 MB to 300 sockets)…
  const r = drain(subs[0]!);
  await until('a resync frame', async () => {
    if (r.text().includes('{"type":"resync"}')) return true;
    await m.waitFinished(await m.force('echo'), 60_000); // events, so the master notices it caught up
    return r.text().includes('{"type":"resync"}');
  }, 120_000);
  assert.ok(r.text().length < 20_000_000, `it got ${r.text().length} bytes, not the whole log`);
});

test('a subscriber that stays behind is closed; subscribers are capped overall (503) and per address (429)', async (t) => {
  const m = await masterWith('eventSubscribers: { max: 3, perAddress: 2, stuckAfter: 1s }\n', { loud: LOUD });
  const wdir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: wdir, executor: 'host', labels: [], log: () => undefined });
  const subs: Socket[] = [];
  t.after(async () => { for (const s of subs) s.destroy(); await w.close(); await m.close(); cleanup(m.dir, wdir); });
  const a = await silentSubscriber(m.url);
  const b = await silentSubscriber(m.url);
  subs.push(a.socket, b.socket);
  assert.match(a.status, / 101 /);
  const third = await silentSubscriber(m.url);
  subs.push(third.socket);
  assert.match(third.status, / 429 /);
  assert.match(third.head, /127\.0\.0\.1 already has 2 event streams open \(eventSubscribers\.perAddress\)/);
  const other = await silentSubscriber(m.url, { localAddress: '127.0.0.2' });
  subs.push(other.socket);
  assert.match(other.status, / 101 /, 'another address has its own allowance');
  const full = await silentSubscriber(m.url, { localAddress: '127.0.0.3' });
  subs.push(full.socket);
  assert.match(full.status, / 503 /);
  assert.match(full.head, /already streams events to 3 dashboards \(eventSubscribers\.max\)/);

  // a and b never read during a loud build: they fall behind for over a second and are closed, freeing their places.
  assert.equal((await m.waitFinished(await m.force('loud'), 120_000)).result, 'success');
  await until('a place for 127.0.0.1 again', async () => {
    const s = await silentSubscriber(m.url);
    subs.push(s.socket);
    return / 101 /.test(s.status);
  }, 30_000);
});

const hmac = (secret: string, body: string) => createHmac('sha256', secret).update(body).digest('hex');
const SHA = (c: string) => c.repeat(40);
const push = (after: string) => JSON.stringify({
  ref: 'refs/heads/main', before: '0'.repeat(40), after, commits: [],
  repository: { clone_url: 'https://git.example.org/team/app.git', html_url: 'https://git.example.org/team/app' },
});

async function hook(m: TestMaster, provider: string, headers: Record<string, string>, body: string) {
  const r = await fetch(`${m.url}/api/v1/hooks/${provider}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: r.status, body: (await r.json()) as { error?: string; queued?: unknown[] } };
}

test('webhooks: a replayed delivery and an old `after` build nothing; each forge has its own secret', async (t) => {
  const m = await masterWith('', { app: `source: { git: "https://git.example.org/team/app.git", branch: main }\nrequires: { executor: host }\nsteps:\n  - run: "true"\n` });
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const secretOf = (f: string) => readFileSync(join(m.dataDir, `webhook-${f}.secret`), 'utf8').trim();
  const github = secretOf('github');
  const gitlab = secretOf('gitlab');
  const count = async () => (await m.get<unknown[]>('/api/v1/builds?builder=app')).length;
  const gh = (body: string, delivery: string, secret = github) =>
    hook(m, 'github', { 'x-github-event': 'push', 'x-github-delivery': delivery, 'x-hub-signature-256': `sha256=${hmac(secret, body)}` }, body);

  const first = await gh(push(SHA('a')), 'd-1');
  assert.equal(first.status, 202);
  assert.equal(first.body.queued!.length, 1, 'the push was delivered and built');
  // The same delivery captured and sent again.
  const replay = await gh(push(SHA('a')), 'd-1');
  assert.deepEqual([replay.status, replay.body.error], [409, 'delivery d-1 was already seen; nothing was built']);
  assert.equal((await gh(push(SHA('b')), 'd-2')).body.queued!.length, 1);
  // The old push under a fresh delivery id (the id is not signed): refused, the branch has moved on.
  const old = await gh(push(SHA('a')), 'd-3');
  assert.equal(old.status, 409);
  assert.match(old.body.error!, /refs\/heads\/main was already at a{40} before its newest head b{40}: an old push is not rebuilt/);
  assert.equal(await count(), 2, 'two builds: a and b, no rebuild of a');

  // The GitLab token (sent in plain in every GitLab delivery) does not sign a GitHub push…
  const crossed = await gh(push(SHA('c')), 'd-4', gitlab);
  assert.equal(crossed.status, 401);
  assert.match(crossed.body.error!, /X-Hub-Signature-256 does not match the body/);
  // …and neither the GitHub secret nor the old shared one is a GitLab token.
  const lab = (token: string, uuid: string) => hook(m, 'gitlab', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': token, 'x-gitlab-event-uuid': uuid },
    JSON.stringify({ ref: 'refs/heads/main', after: SHA('d'), project: { git_http_url: 'https://git.example.org/team/app.git' } }));
  assert.equal((await lab(github, 'u-1')).status, 401);
  const shared = await lab(readFileSync(join(m.dataDir, 'webhook.secret'), 'utf8').trim(), 'u-2');
  assert.equal(shared.status, 401);
  assert.match(shared.body.error!, /GitLab has its own secret: DATA\/webhook-gitlab\.secret/);
  assert.equal(await count(), 2);
  const good = await lab(gitlab, 'u-3');
  assert.equal(good.status, 202);
  assert.equal(await count(), 3, 'its own token works');
  // The old shared secret still signs GitHub pushes (compatibility: it is only an HMAC key).
  assert.equal((await gh(push(SHA('e')), 'd-5', readFileSync(join(m.dataDir, 'webhook.secret'), 'utf8').trim())).status, 202);
});

function rawGet(url: string, path: string, host: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port: portOf(url), path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => ok({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

test('framing headers on pages and API; a forged Host to a loopback master gets 421 for pages, API and both WebSockets', async (t) => {
  const m = await masterWith('', { echo: ECHO });
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const port = portOf(m.url);
  for (const path of ['/', '/api/v1/builders', '/api/v1/nothing']) {
    const r = await rawGet(m.url, path, `127.0.0.1:${port}`);
    assert.notEqual(r.status, 421, `${path}: the real Host is served`);
    assert.equal(r.headers['x-frame-options'], 'DENY', path);
    assert.match(String(r.headers['content-security-policy']), /frame-ancestors 'none'/, path);
  }
  for (const host of [`localhost:${port}`, `[::1]:${port}`]) assert.equal((await rawGet(m.url, '/api/v1/builders', host)).status, 200, host);
  // A page of rebind.example resolved to 127.0.0.1: its requests name its own host.
  for (const path of ['/', '/api/v1/builders', '/api/v1/builds']) {
    const r = await rawGet(m.url, path, `rebind.example:${port}`);
    assert.equal(r.status, 421, path);
    assert.match((JSON.parse(r.body) as { error: string }).error, /the Host header "rebind\.example:\d+" is not this master's loopback address/);
  }
  // Names are what a rebinding page controls; an address literal it cannot rebind. A forwarded
  // port (a local-vm guest dials 10.0.2.2:PORT through QEMU's user network) is served.
  for (const host of [`10.0.2.2:${port}`, `127.0.0.1:${port + 1}`, `[fe80::1]:${port}`]) assert.equal((await rawGet(m.url, '/api/v1/builders', host)).status, 200, host);
  for (const host of [`127.0.0.1.rebind.example:${port}`, `localhost.example:${port}`, `0x7f000001:${port}`]) {
    assert.equal((await rawGet(m.url, '/api/v1/builders', host)).status, 421, `Host "${host}"`);
  }
  for (const path of ['/api/v1/events', '/api/v1/worker']) {
    const s = await silentSubscriber(m.url, { host: `rebind.example:${port}`, path });
    s.socket.destroy();
    assert.match(s.status, / 421 /, path);
  }
});

test('public: false: every read needs the admin token, the events stream too', async (t) => {
  const m = await masterWith('public: false\n', { echo: ECHO });
  t.after(async () => { await m.close(); cleanup(m.dir); });
  for (const path of ['/api/v1/builders', '/api/v1/builds', '/api/v1/workers', '/api/v1/builds/1/log']) {
    assert.equal((await fetch(`${m.url}${path}`)).status, 401, path);
    assert.notEqual((await fetch(`${m.url}${path}`, { headers: { authorization: `Bearer ${m.adminToken}` } })).status, 401, path);
  }
  const s = await silentSubscriber(m.url);
  s.socket.destroy();
  assert.match(s.status, / 401 /);
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/events`, { headers: { authorization: `Bearer ${m.adminToken}` } });
  const first = await new Promise<string>((ok, fail) => { ws.once('message', (d) => ok(String(d))); ws.once('error', fail); });
  ws.close();
  assert.match(first, /"type":"builders"/);
});

test('a worker started with --token-file or $CROWDBAKE_WORKER_TOKEN has no token on its command line', async (t) => {
  const m = await masterWith('', { echo: ECHO });
  const dir = tempDir('w');
  t.after(async () => { await m.close(); cleanup(m.dir, dir); });
  for (const how of ['file', 'env'] as const) {
    const name = `w-${how}`;
    const token = await m.token(name);
    const file = join(dir, `${how}.token`);
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    const args = [CLI, 'worker', '--master', m.url, '--data', join(dir, how), '--when', 'always', '--executor', 'host', ...(how === 'file' ? ['--token-file', file] : [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(how === 'env' ? { CROWDBAKE_WORKER_TOKEN: token } : {}) } });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    t.after(() => { child.kill('SIGKILL'); });
    // The token reached the master: the worker is connected under its name.
    await until(`${name} connected (${out})`, async () => (await m.get<{ name: string; connected: boolean }[]>('/api/v1/workers')).find((w) => w.name === name && w.connected));
    const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8');
    assert.ok(cmdline.includes('worker'), cmdline);
    assert.ok(!cmdline.includes(token.split('.')[2]!), `${how}: the token's secret is not in ${cmdline.replace(/\0/g, ' ')}`);
    assert.doesNotMatch(out, /visible to other users/);
    child.kill('SIGTERM');
  }
  // --token on the command line still works, with a warning.
  const r = spawn(process.execPath, [CLI, 'worker', '--master', 'http://127.0.0.1:1', '--token', 'cbw1.x.y', '--data', join(dir, 'x')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  r.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  await until('the warning', () => err.includes('--token on the command line is visible to other users of this computer'), 20_000);
  r.kill('SIGKILL');
});

async function rawWorker(url: string, name: string, token: string): Promise<{ code: number; messages: string[] }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/api/v1/worker`);
  const messages: string[] = [];
  ws.on('message', (d) => {
    messages.push(String(d));
    if (String(d).includes('"welcome"')) ws.close();
  });
  ws.on('error', () => undefined);
  await new Promise((ok) => ws.once('open', ok));
  ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, name, token, agentVersion: 't', capabilities: CAPS }));
  return new Promise((ok) => ws.on('close', (code) => ok({ code, messages })));
}

test('login throttle: behind a trusted proxy only the forwarded attacker is locked out; failures count per token name', async (t) => {
  const m = await masterWith('trustedProxies: [127.0.0.1]\n', { echo: ECHO });
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const force = (token: string, xff: string) => fetch(`${m.url}/api/v1/builders/echo/builds`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': xff } });
  // The attack is delivered: ten wrong admin tokens through the proxy from 203.0.113.9.
  for (let i = 0; i < 10; i++) assert.equal((await force('wrong', '203.0.113.9')).status, 403);
  const locked = await force(m.adminToken, '203.0.113.9');
  assert.equal(locked.status, 429);
  assert.match(((await locked.json()) as { error: string }).error, /too many failed admin tokens from 203\.0\.113\.9/);
  // The admin behind the same proxy is not locked out; a spoofed hop left of the proxy's does not help the attacker.
  assert.equal((await force(m.adminToken, '198.51.100.7')).status, 201);
  assert.equal((await force(m.adminToken, '198.51.100.7, 203.0.113.9')).status, 429, 'the last untrusted hop is the client');

  // Per name: ten wrong tokens for w1 from this address do not lock out w2 from the same address.
  const w1 = await m.token('w1');
  const w2 = await m.token('w2');
  for (let i = 0; i < 10; i++) assert.equal((await rawWorker(m.url, 'w1', 'cbw1.w1.CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC')).code, 4401);
  const blocked = await rawWorker(m.url, 'w1', w1);
  assert.equal(blocked.code, 4429);
  assert.match(blocked.messages.join('\n'), /too many failed logins as \\"w1\\" from 127\.0\.0\.1/);
  const other = await rawWorker(m.url, 'w2', w2);
  assert.ok(other.messages.some((s) => s.includes('"welcome"')), `w2 logs in: ${other.messages.join('\n')}`);
});

test('without trustedProxies X-Forwarded-For is ignored: a client cannot pick the address it is throttled under', async (t) => {
  const m = await masterWith('', { echo: ECHO });
  t.after(async () => { await m.close(); cleanup(m.dir); });
  for (let i = 0; i < 10; i++) {
    const r = await fetch(`${m.url}/api/v1/builders/echo/builds`, { method: 'POST', headers: { authorization: 'Bearer wrong', 'x-forwarded-for': `192.0.2.${i}` } });
    assert.equal(r.status, 403);
  }
  const r = await fetch(`${m.url}/api/v1/builders/echo/builds`, { method: 'POST', headers: { authorization: `Bearer ${m.adminToken}`, 'x-forwarded-for': '192.0.2.200' } });
  assert.equal(r.status, 429);
});
