import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { BuilderView, BuildView, WorkerView } from '../protocol/api.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { openStore } from '../master/store/open-store.js';
import { createWorkerToken } from '../master/tokens.js';
import { startWorker } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster, until, type TestMaster } from './helpers/cluster.js';

/**
 * A malicious worker: a raw WebSocket speaking the worker protocol with a valid token. Each
 * test first shows the attack frame reached the master (its answer, the build's state), then
 * that the master stayed within the build's spec and the token's grants.
 */

const CAPS = { os: 'evil', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1, diskBytes: 1, executors: ['host'], labels: [] as string[], maxBuilds: 1, virtualization: false };

interface Frame { type: string; buildId?: number; attempt?: number; message?: string; reason?: string; spec?: { steps: { env: Record<string, string> }[] } }

async function rawWorker(m: TestMaster, name: string, token: string, caps: Partial<typeof CAPS> = {}) {
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  const inbox: Frame[] = [];
  const raw: string[] = [];
  const closed = new Promise<{ code: number; at: number }>((ok) => ws.on('close', (code) => ok({ code, at: Date.now() })));
  ws.on('message', (d) => { raw.push(d.toString()); inbox.push(JSON.parse(d.toString()) as Frame); });
  ws.on('error', () => undefined);
  await new Promise((ok) => ws.once('open', ok));
  ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, name, token, agentVersion: 'evil', capabilities: { ...CAPS, ...caps } }));
  await until(`${name}'s welcome`, () => inbox.find((f) => f.type === 'welcome'));
  const send = (m: Record<string, unknown>) => ws.send(JSON.stringify(m));
  const assignOf = (buildId: number) => until(`the assignment of build ${buildId} to ${name}`, () => inbox.find((f) => f.type === 'assign' && f.buildId === buildId));
  return { ws, inbox, raw, closed, send, assignOf };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function tokenWith(m: TestMaster, name: string, labels: string[], maxBuilds?: number): Promise<string> {
  const store = await openStore(`sqlite:${join(m.dataDir, 'crowdbake.db')}`);
  try { return await createWorkerToken(store, name, labels, maxBuilds); } finally { await store.close(); }
}

/** A test master whose crowdbake.yml has `yaml` in it. */
async function masterWith(builders: Record<string, string>, yaml: string): Promise<TestMaster & { dir: string }> {
  const dir = tempDir('adversary');
  mkdirSync(join(dir, 'config'), { recursive: true });
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), yaml);
  const m = await testMaster(builders, { dir });
  return Object.assign(m, { dir });
}

const flagsOf = async (m: TestMaster, worker: string) =>
  ((await m.get<(WorkerView & { flags: { buildId: number; reason: string }[] })[]>('/api/v1/workers')).find((w) => w.name === worker)?.flags ?? []);

const openFds = () => readdirSync('/proc/self/fd').length;

async function honestWorker(t: { after(fn: () => unknown): void }, m: TestMaster, name: string, labels: string[] = []) {
  const dir = tempDir('honest');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await tokenWith(m, name, labels), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); cleanup(dir); });
  return w;
}

test('a step index of 4294967294 gets an error naming step.index; memory stays flat; the build is requeued away from the worker, which is flagged', async (t) => {
  const m = await masterWith({
    victim: 'requires: { executor: host }\nsteps:\n  - run: echo one\n  - run: echo two\n',
    other: 'requires: { executor: host }\nsteps:\n  - run: echo other\n',
  }, 'maxAttempts: 3\n');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'evil', await tokenWith(m, 'evil', []));
  const id = await m.force('victim');
  const a = await bad.assignOf(id);
  const rssBefore = process.memoryUsage().rss;
  bad.send({ type: 'step', buildId: id, attempt: a.attempt, index: 4294967294, name: 'x', state: 'finished', result: 'success', exitCode: 0 });
  // Delivered: the master answers naming the field, and takes the build back.
  const err = await until('the error', () => bad.inbox.find((f) => f.type === 'error'));
  assert.match(err.message!, new RegExp(`^build ${id}: step\\.index: 4294967294 is not a step of this build \\(it has 2, numbered from 0\\)`));
  assert.ok(bad.inbox.some((f) => f.type === 'cancel' && f.buildId === id), 'the worker is told to stop the build');
  const requeued = await until('requeued', async () => { const b = await m.get<BuildView>(`/api/v1/builds/${id}`); return b.state === 'queued' ? b : null; });
  assert.match(requeued.message!, /worker evil sent a message outside the build's spec \(step\.index: 4294967294/);
  assert.equal(requeued.steps.length, 0);
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 64 * 1024 ** 2, `rss grew by ${Math.round(grown / 1048576)} MiB`);
  assert.deepEqual((await flagsOf(m, 'evil')).map((f) => f.buildId), [id]);
  assert.match((await flagsOf(m, 'evil'))[0]!.reason, /step\.index/);
  // The worker frees its slot (a late "finished") and is idle: it gets the next build, never the victim again.
  bad.send({ type: 'state', buildId: id, attempt: a.attempt, state: 'finished', result: 'cancelled', message: null });
  const next = await m.force('other');
  await bad.assignOf(next);
  assert.equal(bad.inbox.filter((f) => f.type === 'assign' && f.buildId === id).length, 1);
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'queued');
  // An honest worker runs it.
  await honestWorker(t, m, 'honest');
  const done = await m.waitFinished(id, 30_000);
  assert.deepEqual([done.result, done.worker, done.attempt], ['success', 'honest', 2]);
  assert.equal(done.steps.length, 2);
});

test('1000 unfinished uploads: the second open upload is refused naming artifact.name; no descriptors or .partial files pile up', async (t) => {
  const m = await masterWith({ art: 'requires: { executor: host }\nsteps:\n  - run: "true"\nartifacts: ["out/*.bin"]\n' }, 'maxAttempts: 3\n');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'evil', await tokenWith(m, 'evil', []));
  const id = await m.force('art');
  const a = await bad.assignOf(id);
  const fdsBefore = openFds();
  const chunk = Buffer.alloc(1024, 1);
  for (let i = 0; i < 1000; i++) {
    bad.send({ type: 'artifact', buildId: id, attempt: a.attempt, name: `f${i}.bin`, size: 1 << 20, sha256: sha(chunk), offset: 0, data: chunk.toString('base64'), last: false });
  }
  const err = await until('the error', () => bad.inbox.find((f) => f.type === 'error'));
  assert.match(err.message!, /artifact\.name: "f1\.bin" started while the upload of "f0\.bin" is still open; one artifact upload at a time per build/);
  await until('requeued', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'queued');
  // Everything after the refusal is for an attempt that is no longer current: ignored.
  await until('no open upload', () => !existsSync(join(m.dataDir, 'artifacts', String(id))) || readdirSync(join(m.dataDir, 'artifacts', String(id))).length === 0);
  assert.ok(openFds() - fdsBefore < 20, `open descriptors grew from ${fdsBefore} to ${openFds()}`);
  assert.match((await flagsOf(m, 'evil'))[0]!.reason, /artifact\.name/);
  // The master still takes connections.
  assert.equal((await fetch(`${m.url}/healthz`)).status, 200);
});

test('names the spec cannot produce, and an upload that stalls, are dropped: error naming the field, .partial removed', async (t) => {
  const m = await masterWith({
    art: 'requires: { executor: host }\nsteps:\n  - run: "true"\nartifacts: ["out/*.deb"]\n',
    none: 'requires: { executor: host }\nsteps:\n  - run: "true"\n',
    // Another builder: each builder's queue goes oldest first, and its head is barred from this worker.
    slow: 'requires: { executor: host }\nsteps:\n  - run: "true"\nartifacts: ["out/*.deb"]\n',
  }, 'limits:\n  uploadStall: 1\n');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'evil', await tokenWith(m, 'evil', []));
  const data = Buffer.from('x');
  const art = (buildId: number, attempt: number, name: string, last: boolean) =>
    bad.send({ type: 'artifact', buildId, attempt, name, size: 10, sha256: sha(data), offset: 0, data: data.toString('base64'), last });
  const none = await m.force('none');
  const a1 = await bad.assignOf(none);
  art(none, a1.attempt!, 'x.deb', true);
  assert.match((await until('error 1', () => bad.inbox.find((f) => f.type === 'error')))!.message!, /artifact\.name: "x\.deb": this build's spec names no artifacts/);
  bad.send({ type: 'state', buildId: none, attempt: a1.attempt, state: 'finished', result: 'cancelled', message: null });
  const id = await m.force('art');
  const a2 = await bad.assignOf(id);
  art(id, a2.attempt!, 'notes.txt', true);
  await until('error 2', () => bad.inbox.filter((f) => f.type === 'error').length >= 2);
  assert.match(bad.inbox.filter((f) => f.type === 'error')[1]!.message!, /artifact\.name: "notes\.txt" matches none of the build's artifact patterns \(out\/\*\.deb\)/);
  bad.send({ type: 'state', buildId: id, attempt: a2.attempt, state: 'finished', result: 'cancelled', message: null });
  // A stalled upload (a name the spec allows, never finished).
  const stall = await m.force('slow');
  const a3 = await until('assignment 3', () => bad.inbox.find((f) => f.type === 'assign' && f.buildId !== none && f.buildId !== id));
  assert.equal(a3.buildId, stall, 'the barred builds did not come back to this worker');
  art(stall, a3.attempt!, 'pkg.deb', false);
  const partial = join(m.dataDir, 'artifacts', String(stall), 'pkg.deb.partial');
  await until('the .partial exists', () => existsSync(partial));
  await until('the stalled upload is dropped', () => !existsSync(partial), 10_000);
  const log = await (await fetch(`${m.url}/api/v1/builds/${stall}/log`)).text();
  assert.match(log, /artifact pkg\.deb dropped: no data for 1s \(limits\.uploadStall\)/);
});

test('per-build caps from crowdbake.yml: log bytes, artifact count and artifact bytes end the build with an error naming the cap', async (t) => {
  const m = await masterWith({
    art: 'requires: { executor: host }\nsteps:\n  - run: "true"\nartifacts: ["*.bin"]\n',
    loud: 'requires: { executor: host }\nsteps:\n  - run: "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 300000"\n',
  }, 'limits:\n  logSize: 64k\n  artifactCount: 2\n  artifactsSize: 100\n');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'evil', await tokenWith(m, 'evil', []));
  const artifact = (buildId: number, attempt: number, name: string, data: Buffer) =>
    bad.send({ type: 'artifact', buildId, attempt, name, size: data.length, sha256: sha(data), offset: 0, data: data.toString('base64'), last: true });
  // Count: two small artifacts are kept, the third ends the build.
  const count = await m.force('art');
  const a = await bad.assignOf(count);
  for (const n of ['a.bin', 'b.bin', 'c.bin']) artifact(count, a.attempt!, n, Buffer.from(n));
  const c = await m.waitFinished(count, 10_000);
  assert.equal(c.result, 'error');
  assert.match(c.message!, /more than 2 artifacts, the master's limit \(limits\.artifactCount in crowdbake\.yml\)/);
  assert.deepEqual((await m.get<{ name: string }[]>(`/api/v1/builds/${count}/artifacts`)).map((x) => x.name), ['a.bin', 'b.bin']);
  assert.match(await (await fetch(`${m.url}/api/v1/builds/${count}/log`)).text(), /limits\.artifactCount/);
  bad.send({ type: 'state', buildId: count, attempt: a.attempt, state: 'finished', result: 'cancelled', message: null });
  // Bytes: 101 announced bytes against a cap of 100 in all.
  const bytes = await m.force('art');
  const b = await bad.assignOf(bytes);
  artifact(bytes, b.attempt!, 'big.bin', Buffer.alloc(101));
  const bb = await m.waitFinished(bytes, 10_000);
  assert.match(bb.message!, /artifacts exceed the master's limit of 100 B in all \(limits\.artifactsSize in crowdbake\.yml; "big\.bin" is 101 B\)/);
  assert.deepEqual(await m.get(`/api/v1/builds/${bytes}/artifacts`), []);
  bad.ws.close();
  await bad.closed;
  // Log bytes, from a real worker running a build that prints 300 kB.
  await honestWorker(t, m, 'honest');
  const loud = await m.force('loud');
  const l = await m.waitFinished(loud, 30_000);
  assert.equal(l.result, 'error');
  assert.match(l.message!, /the build's log exceeds the master's limit of 64\.0 KiB \(limits\.logSize in crowdbake\.yml\)/);
  const text = await (await fetch(`${m.url}/api/v1/builds/${loud}/log`)).text();
  assert.ok(text.length < 64 * 1024 + 8 * 1024, `the log kept ${text.length} bytes`);
  assert.match(text, /limits\.logSize/);
});

test('artifacts belong to an attempt: what a worker uploaded before its attempt was requeued is never listed, served or bundled once another attempt succeeds', async (t) => {
  const m = await masterWith({ art: 'requires: { executor: host }\nsteps:\n  - run: "printf honest > out.bin"\nartifacts: ["*.bin"]\n' }, 'maxAttempts: 3\n');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'evil', await tokenWith(m, 'evil', []));
  const id = await m.force('art');
  const a = await bad.assignOf(id);
  const upload = (name: string, data: Buffer) =>
    bad.send({ type: 'artifact', buildId: id, attempt: a.attempt, name, size: data.length, sha256: sha(data), offset: 0, data: data.toString('base64'), last: true });
  // Two complete, verified uploads (a name the honest attempt will not make, and one it will), then the worker goes.
  upload('planted.bin', Buffer.from('planted by evil'));
  upload('out.bin', Buffer.from('evil'));
  await until('both uploads are listed for the running attempt', async () =>
    (await m.get<{ name: string }[]>(`/api/v1/builds/${id}/artifacts`)).length === 2);
  bad.ws.close();
  await bad.closed;
  await until('requeued', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'queued');
  assert.deepEqual(await m.get(`/api/v1/builds/${id}/artifacts`), [], 'a queued build lists nothing');
  await honestWorker(t, m, 'honest');
  const done = await m.waitFinished(id, 30_000);
  assert.deepEqual([done.result, done.worker, done.attempt], ['success', 'honest', 2]);
  assert.deepEqual((await m.get<{ name: string; worker: string }[]>(`/api/v1/builds/${id}/artifacts`)).map((x) => [x.name, x.worker]), [['out.bin', 'honest']]);
  const planted = await fetch(`${m.url}/api/v1/builds/${id}/artifacts/planted.bin`);
  assert.equal(planted.status, 404, 'the requeued attempt\'s upload is not served');
  assert.equal((await fetch(`${m.url}/api/v1/builds/${id}/artifacts/planted.bin/provenance`)).status, 404, 'nor bundled');
  assert.equal(await (await fetch(`${m.url}/api/v1/builds/${id}/artifacts/out.bin`)).text(), 'honest');
});

test('labels are the token\'s: a worker claiming release-signer never receives that builder\'s spec; one granted the label does', async (t) => {
  const m = await masterWith({
    signer: 'requires: { executor: host, labels: [release-signer] }\nsteps:\n  - run: sign\n    env: { SIGNING_KEY: s3cr3t-key-material }\n',
  }, '');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'evil', await tokenWith(m, 'evil', []), { labels: ['release-signer'], maxBuilds: 4 });
  // Delivered: the claim was accepted into the hello (the worker is connected and idle).
  const seen = (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'evil')!;
  assert.deepEqual([seen.connected, seen.state, seen.labels], [true, 'idle', []]);
  const id = await m.force('signer');
  const builder = (await m.get<BuilderView[]>('/api/v1/builders')).find((x) => x.name === 'signer')!;
  assert.equal(builder.runnable, false);
  assert.match(builder.unrunnable ?? '', /evil lacks label release-signer/);
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'queued');
  const good = await rawWorker(m, 'signer-box', await tokenWith(m, 'signer-box', ['release-signer']));
  const a = await good.assignOf(id);
  assert.equal(a.spec!.steps[0]!.env.SIGNING_KEY, 's3cr3t-key-material');
  assert.ok(!bad.raw.some((r) => r.includes('s3cr3t') || r.includes('"assign"')), 'the claiming worker got nothing');
});

test('maxBuilds is the token\'s grant: a worker offering 256 runs at most the admin\'s 2; the CLI stores --max-builds', async (t) => {
  const m = await masterWith({ b: 'requires: { executor: host }\nsteps:\n  - run: "true"\n' }, '');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'greedy', await tokenWith(m, 'greedy', [], 2), { maxBuilds: 256 });
  const ids: number[] = [];
  for (let i = 0; i < 5; i++) ids.push(await m.force('b'));
  await until('two assignments', () => bad.inbox.filter((f) => f.type === 'assign').length >= 2);
  const builds = await Promise.all(ids.map((id) => m.get<BuildView>(`/api/v1/builds/${id}`)));
  assert.deepEqual(builds.map((b) => b.state).sort(), ['queued', 'queued', 'queued', 'running', 'running']);
  assert.equal(bad.inbox.filter((f) => f.type === 'assign').length, 2);
  // The CLI: refuses a bad grant by name, stores a good one.
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'token', ...args, '--data', m.dataDir], { encoding: 'utf8' });
  const refused = run(['create', '--name', 'x', '--max-builds', '0']);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /--max-builds "0" must be a whole number from 1 to 256/);
  assert.equal(run(['create', '--name', 'two', '--max-builds', '2']).status, 0);
  assert.match(run(['list']).stdout, /^two\tactive\tlabels=-\tmax-builds=2\t/m);
  assert.match(run(['list']).stdout, /^greedy\tactive\tlabels=-\tmax-builds=2\t/m);
});

test('the master\'s deadline: limits.time plus the grace, frozen time not counted; then the build is requeued and the worker flagged', async (t) => {
  const m = await masterWith({ slow: 'requires: { executor: host }\nsteps:\n  - run: "true"\nlimits: { time: 1s }\n' }, 'limits:\n  timeGrace: 1\n  frozenTime: 2\n');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const bad = await rawWorker(m, 'sitter', await tokenWith(m, 'sitter', []));
  const id = await m.force('slow');
  const a = await bad.assignOf(id);
  bad.send({ type: 'accepted', buildId: id, attempt: a.attempt });
  // It reports the build frozen: the 2 s run budget does not run while it is.
  bad.send({ type: 'state', buildId: id, attempt: a.attempt, state: 'frozen', result: null, message: 'the volunteer is back' });
  await until('frozen', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'frozen');
  // Frozen time has a budget of its own (frozenTime: 2s): then the build goes.
  const cancel = await until('the cancel', () => bad.inbox.find((f) => f.type === 'cancel'), 10_000);
  assert.match(cancel.reason!, /frozen for longer than the master allows in all \(2s\); the build runs elsewhere/);
  const b = await until('requeued', async () => { const x = await m.get<BuildView>(`/api/v1/builds/${id}`); return x.state === 'queued' ? x : null; });
  assert.match(b.message!, /worker sitter frozen for longer than the master allows/);
  assert.match((await flagsOf(m, 'sitter'))[0]!.reason, /frozen for longer/);
  // A second worker that sits on it (running, silent) loses it after limits.time + grace.
  const sitter2 = await rawWorker(m, 'sitter2', await tokenWith(m, 'sitter2', []));
  const a2 = await sitter2.assignOf(id);
  bad.ws.close();
  sitter2.send({ type: 'accepted', buildId: id, attempt: a2.attempt });
  const cancel2 = await until('the second cancel', () => sitter2.inbox.find((f) => f.type === 'cancel'), 10_000);
  assert.match(cancel2.reason!, /ran longer than the master allows \(2s, its time limit plus the grace; frozen time not counted\)/);
  assert.match((await flagsOf(m, 'sitter2'))[0]!.reason, /ran longer than the master allows/);
});

test('frozen time does not count toward the deadline: a build frozen for longer than its time limit is still running', async (t) => {
  const m = await masterWith({ slow: 'requires: { executor: host }\nsteps:\n  - run: "true"\nlimits: { time: 1s }\n' }, 'limits:\n  timeGrace: 1\n  frozenTime: 1h\n');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const w = await rawWorker(m, 'thawer', await tokenWith(m, 'thawer', []));
  const id = await m.force('slow');
  const a = await w.assignOf(id);
  w.send({ type: 'state', buildId: id, attempt: a.attempt, state: 'frozen', result: null, message: 'held' });
  await until('frozen', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'frozen');
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(w.inbox.filter((f) => f.type === 'cancel').length, 0, 'frozen for 3 s with a 2 s budget: not expelled');
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'frozen');
  w.send({ type: 'state', buildId: id, attempt: a.attempt, state: 'running', result: null, message: null });
  const cancel = await until('the cancel once running', () => w.inbox.find((f) => f.type === 'cancel'), 10_000);
  assert.match(cancel.reason!, /ran longer than the master allows/);
});

test('token revoke (a separate process) closes a connected worker with 4401 (the master re-checks tokens every 500 ms), and it cannot come back', async (t) => {
  const m = await masterWith({}, '');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const token = await tokenWith(m, 'leaver', []);
  const w = await rawWorker(m, 'leaver', token);
  assert.equal((await m.get<WorkerView[]>('/api/v1/workers')).find((x) => x.name === 'leaver')?.connected, true);
  const r = spawnSync(process.execPath, [CLI, 'token', 'revoke', 'leaver', '--data', m.dataDir], { encoding: 'utf8' });
  const revokedAt = Date.now();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /revoked leaver; a running master disconnects a worker using it within a second/);
  let gone: { code: number; at: number } | null = null;
  void w.closed.then((c) => { gone = c; });
  const closed = await until('the worker disconnected', () => gone, 20_000);
  assert.equal(closed.code, 4401);
  // The master re-checks tokens every 500 ms; the time it took is a diagnostic, not a test's bound.
  t.diagnostic(`closed ${closed.at - revokedAt} ms after the revocation`);
  assert.ok(w.inbox.some((f) => f.type === 'error' && /token revoked/.test(f.message ?? '')));
  // And it cannot come back.
  const again = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  const code = new Promise<number>((ok) => again.on('close', (c) => ok(c)));
  again.on('error', () => undefined);
  await new Promise((ok) => again.once('open', ok));
  again.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, name: 'leaver', token, agentVersion: 'x', capabilities: CAPS }));
  assert.equal(await code, 4401);
});

test('numbers at their bounds are refused as bad frames naming the field; messages about another worker\'s build or attempt change nothing', async (t) => {
  const m = await masterWith({ b: 'requires: { executor: host }\nsteps:\n  - run: "true"\nartifacts: ["*.bin"]\n' }, '');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const owner = await rawWorker(m, 'owner', await tokenWith(m, 'owner', []));
  const id = await m.force('b');
  const a = await owner.assignOf(id);
  owner.send({ type: 'accepted', buildId: id, attempt: a.attempt });
  const other = await rawWorker(m, 'other', await tokenWith(m, 'other', []));
  const step = { type: 'step', buildId: id, attempt: a.attempt, index: 0, name: 'x', state: 'finished', result: 'success', exitCode: 0 };
  const art = { type: 'artifact', buildId: id, attempt: a.attempt, name: 'a.bin', size: 1, sha256: '0'.repeat(64), offset: 0, data: '', last: true };
  const frames: [Record<string, unknown>, RegExp][] = [
    [{ ...step, exitCode: 2 ** 40 }, /^bad frame: exitCode: /],
    [{ ...step, index: -1 }, /^bad frame: index: /],
    [{ ...step, index: 0.5 }, /^bad frame: index: /],
    [{ ...art, size: -1 }, /^bad frame: size: /],
    [{ ...art, offset: 2 ** 60 }, /^bad frame: offset: /],
    [{ ...art, name: '../x.bin' }, /^bad frame: name: must be a plain file name/],
    [{ ...step, attempt: 0 }, /^bad frame: attempt: /],
  ];
  for (const [f] of frames) other.send(f);
  await until('the refusals', () => other.inbox.filter((f) => f.type === 'error').length >= frames.length);
  const errors = other.inbox.filter((f) => f.type === 'error').map((f) => f.message!);
  for (const [i, [, re]] of frames.entries()) assert.match(errors[i]!, re);
  // Well-formed, but about a build this worker does not hold (the owner's), or an attempt that is not current.
  other.send({ type: 'log', buildId: id, attempt: a.attempt, data: 'INJECTED BY OTHER\n' });
  other.send({ type: 'state', buildId: id, attempt: a.attempt, state: 'finished', result: 'success', message: 'forged' });
  owner.send({ type: 'log', buildId: id, attempt: a.attempt! + 1, data: 'WRONG ATTEMPT\n' });
  owner.send({ type: 'state', buildId: id, attempt: a.attempt! + 1, state: 'finished', result: 'success', message: 'forged' });
  // A frame of the owner's own, after those, shows they were all handled (frames are handled in order).
  owner.send({ type: 'log', buildId: id, attempt: a.attempt, data: 'own line\n' });
  await until('the owner\'s line', async () => (await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text()).includes('own line'));
  // And one of the other worker's: its availability goes through the same ordered chain as its forged frames.
  other.send({ type: 'availability', accepting: false, reason: 'sync point' });
  await until('the other\'s frames handled', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'other')?.reason === 'sync point');
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  assert.doesNotMatch(log, /INJECTED|WRONG ATTEMPT/);
  const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
  assert.deepEqual([b.state, b.worker, b.message], ['running', 'owner', null]);
  assert.deepEqual(await flagsOf(m, 'owner'), []);
});

test('a log frame of bytes that are not UTF-8, sent as a text frame over a real socket: the master\'s ws closes the connection (1007) and none of the frame reaches the log', async (t) => {
  // The master writes a log frame's bytes to the log as they came, relying on ws's check of
  // every text frame (master/worker-hub.ts textChecked): this is that check, on the real path.
  const m = await masterWith({ b: 'requires: { executor: host }\nsteps:\n  - run: "true"\n' }, '');
  t.after(async () => { await m.close(); cleanup(m.dir); });
  const evil = await rawWorker(m, 'evil', await tokenWith(m, 'evil', []));
  const id = await m.force('b');
  const a = await evil.assignOf(id);
  evil.send({ type: 'accepted', buildId: id, attempt: a.attempt });
  evil.ws.send(Buffer.from(`L${id} ${a.attempt}\nvalid line\n`), { binary: false });
  await until('the valid line', async () => (await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text()).includes('valid line'));
  // Invalid: a lone continuation byte, an overlong "/", a surrogate half (CESU-8), a byte that never occurs.
  evil.ws.send(Buffer.concat([Buffer.from(`L${id} ${a.attempt}\nNOT UTF-8 `), Buffer.from([0x80, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xff]), Buffer.from('\n')]), { binary: false });
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([evil.closed, new Promise<{ code: number }>((ok) => { timer = setTimeout(() => ok({ code: -1 }), 10_000); })]);
  clearTimeout(timer);
  assert.equal(closed.code, 1007, 'invalid UTF-8 in a text frame closes the connection (-1: still open after 10 s)');
  // The log's bytes as the master serves them (fetch's text() would replace invalid bytes itself).
  const bytes = Buffer.from(await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).arrayBuffer());
  assert.ok(bytes.includes('valid line'));
  assert.equal(bytes.includes('NOT UTF-8'), false);
  assert.ok(isUtf8(bytes), 'the stored log is UTF-8');
});
