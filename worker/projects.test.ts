import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, verify, createPublicKey, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinSignedText, JoinRequestSchema, type JoinLink } from '../protocol/join.js';
import { join as joinProject } from './join-project.js';
import { listProjects, pickByShare, projectNameFor, removeProject, setShare } from './projects.js';

/** Picks `n` unit-length slots in turn, as the agent does, and counts them per project. */
function simulate(shares: Record<string, number>, n: number, eligible: (name: string, i: number) => boolean = () => true): Record<string, number> {
  const used: Record<string, number> = Object.fromEntries(Object.keys(shares).map((k) => [k, 0]));
  for (let i = 0; i < n; i++) {
    const pick = pickByShare(Object.entries(shares).map(([name, share]) => ({ name, share, used: used[name]!, eligible: eligible(name, i) })));
    if (pick) used[pick]! += 1;
  }
  return used;
}

test('share arithmetic: slots go in proportion to the shares; ties go to the larger share; a project without work does not block the others', () => {
  assert.deepEqual(simulate({ a: 3, b: 1 }, 400), { a: 300, b: 100 });
  assert.deepEqual(simulate({ a: 1, b: 1, c: 2 }, 400), { a: 100, b: 100, c: 200 });
  assert.equal(pickByShare([{ name: 'a', share: 1, used: 0, eligible: true }, { name: 'b', share: 3, used: 0, eligible: true }]), 'b');
  // b has no work for the first 100 slots: a gets them all, then b catches up before a gets more.
  const r = simulate({ a: 1, b: 1 }, 300, (name, i) => name === 'a' || i >= 100);
  assert.deepEqual(r, { a: 150, b: 150 });
  assert.equal(pickByShare([{ name: 'a', share: 1, used: 5, eligible: false }]), null);
  assert.equal(pickByShare([]), null);
  // Slot-seconds, not counts: a project with long builds gets fewer of them.
  assert.equal(pickByShare([{ name: 'long', share: 1, used: 600, eligible: true }, { name: 'short', share: 1, used: 10, eligible: true }]), 'short');
});

test('project names: the farm\'s name, else the master\'s host, made safe', () => {
  assert.equal(projectNameFor('Test Farm', 'http://x:1'), 'test-farm');
  assert.equal(projectNameFor(undefined, 'https://farm.example.org:8585'), 'farm.example.org-8585');
  assert.equal(projectNameFor('../../etc', 'http://x:1'), 'etc');
});

interface StandIn { url: string; bodies: string[]; close(): Promise<void> }

/** A stand-in for the master's POST /api/v1/join (not the real master): answers `status` with `body`, records requests. */
async function standIn(status: number, body: (req: Record<string, unknown>) => unknown, tls?: { key: string; cert: string }): Promise<StandIn> {
  const bodies: string[] = [];
  const handler = (req: IncomingMessage, res: import('node:http').ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => { text += c.toString(); });
    req.on('end', () => {
      bodies.push(text);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body(JSON.parse(text) as Record<string, unknown>)));
    });
  };
  const server: Server = tls ? createTlsServer(tls, handler) : createServer(handler);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  return { url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, bodies, close: () => new Promise((ok) => server.close(() => ok())) };
}

const accepted = (req: Record<string, unknown>) => ({ worker: req.worker, volunteer: { id: 'vol-1', displayName: req.displayName, trust: 'new' }, labels: ['gpu'], maxBuilds: 1, farm: 'Stand-in Farm' });
const CODE = 'Code_0123456789abcdefXYZ';
const opts = (dataDir: string) => ({ dataDir, worker: 'ada-laptop', displayName: 'Ada', listed: true });

test('join against a stand-in master: a signed request without the secret; 0600 files; the invite code stored nowhere; share, leave', async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'cb-join-'));
  const m = await standIn(201, accepted);
  t.after(async () => { await m.close(); rmSync(data, { recursive: true, force: true }); });
  const link: JoinLink = { master: m.url, code: CODE, farm: 'Stand-in Farm' };
  const r = await joinProject(link, opts(data));
  assert.deepEqual([r.project, r.worker, r.labels], ['stand-in-farm', 'ada-laptop', ['gpu']]);

  // What went to the master: the code, the hash of the secret, and a signature that verifies.
  const req = JoinRequestSchema.parse(JSON.parse(m.bodies[0]!));
  assert.equal(req.code, CODE);
  const vk = createPublicKey({ key: Buffer.from(req.volunteerKey, 'base64'), format: 'der', type: 'spki' });
  assert.ok(verify(null, Buffer.from(joinSignedText(req)), vk, Buffer.from(req.volunteerSignature, 'base64')));

  const [p] = listProjects(data);
  assert.equal(p!.master, m.url);
  const secret = p!.token.split('.')[2]!;
  assert.equal(createHash('sha256').update(secret).digest('hex'), req.tokenHash);
  assert.ok(!m.bodies[0]!.includes(secret), 'the secret never leaves this computer');
  for (const f of ['projects/stand-in-farm.json', 'projects/stand-in-farm.key', 'volunteer.key']) {
    assert.equal(statSync(join(data, f)).mode & 0o777, 0o600, f);
    assert.ok(!readFileSync(join(data, f), 'utf8').includes(CODE), `${f} holds the invite code`);
  }
  assert.equal(statSync(join(data, 'projects')).mode & 0o777, 0o700);

  // A second project: the same volunteer key.
  const m2 = await standIn(201, accepted);
  t.after(() => m2.close());
  await joinProject({ master: m2.url, code: CODE, farm: 'Second' }, opts(data));
  assert.equal(JSON.parse(m2.bodies[0]!).volunteerKey, req.volunteerKey);

  assert.equal(setShare(data, 'second', 3).share, 3);
  assert.equal(statSync(join(data, 'projects', 'second.json')).mode & 0o777, 0o600);
  assert.throws(() => setShare(data, 'second', 0), /must be a positive number/);
  assert.throws(() => setShare(data, 'nope', 2), /no joined project "nope".*joined: second, stand-in-farm/);
  removeProject(data, 'second');
  assert.deepEqual(readdirSync(join(data, 'projects')).sort(), ['stand-in-farm.json', 'stand-in-farm.key']);
});

test('join refused by a stand-in master (each reason): the master\'s sentence and reason, nothing written', async (t) => {
  for (const [status, reason, error] of [[410, 'used-up', 'this invite is used up'], [410, 'expired', 'this invite expired'], [410, 'revoked', 'this invite was revoked'],
    [404, 'unknown-code', 'no such invite'], [403, 'closed', 'enrollment is closed'], [403, 'banned', 'this volunteer is banned'], [409, 'name-taken', 'a worker named ada-laptop exists']] as const) {
    const data = mkdtempSync(join(tmpdir(), 'cb-join-'));
    const m = await standIn(status, () => ({ error, reason }));
    try {
      await assert.rejects(joinProject({ master: m.url, code: CODE }, opts(data)), new RegExp(`refused to let this worker join: ${error} \\(${reason}\\)`));
      assert.equal(m.bodies.length, 1, 'the request was delivered');
      assert.deepEqual(readdirSync(data), [], `nothing written after ${reason}`);
    } finally { await m.close(); rmSync(data, { recursive: true, force: true }); }
  }
  void t;
});

test('join pins the TLS certificate before anything is sent: an impostor gets no invite code', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cb-join-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = (name: string) => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `${name}.key`),
      '-out', join(dir, `${name}.crt`), '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const pem = readFileSync(join(dir, `${name}.crt`), 'utf8');
    return { key: readFileSync(join(dir, `${name}.key`), 'utf8'), cert: pem, pin: `sha256:${createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')}` };
  };
  const real = cert('real');
  const impostor = cert('impostor');
  const m = await standIn(201, accepted, impostor);
  t.after(() => m.close());
  const data = join(dir, 'data');
  await assert.rejects(joinProject({ master: m.url, code: CODE, pin: real.pin }, opts(data)), /is not the one the join link names: its certificate is sha256:[0-9a-f]{64}, the link pins sha256:.*Nothing was sent/);
  assert.deepEqual(m.bodies, [], 'the impostor got no request');
  assert.ok(!existsSync(data) || readdirSync(data).length === 0);
  // The same link pinned to the stand-in's own (self-signed) certificate: joins.
  const r = await joinProject({ master: m.url, code: CODE, pin: impostor.pin }, opts(data));
  assert.equal(r.worker, 'ada-laptop');
  assert.equal(m.bodies.length, 1);
  assert.equal(listProjects(data)[0]!.pin, impostor.pin);
});
