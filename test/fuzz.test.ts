import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import WebSocket from 'ws';
import { decodeWorkerMessage } from '../protocol/from-worker.js';
import { decodeMasterMessage } from '../protocol/worker-messages.js';
import { decodeLogFrame } from '../protocol/log-frame.js';
import { parseBuilderFile } from '../master/config/builder-file-loader.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode, Encoder } from '@msgpack/msgpack';
import { WebSocketServer } from 'ws';
import { IdleReportSchema, PreferencesPatchSchema, SnoozeRequestSchema } from '../protocol/control-api.js';
import { startWorker } from '../worker/agent.js';
import { MsgpackConnection } from '../worker/buildbot/connection.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// Inputs in all: 60,000 frames, 15,000 builder files, 10,000 frames to a live master, 10,000
// control API bodies (+1,000 to a live agent), 5,000 msgpack frames: 101,000.
// Property-based fuzzing of every decoder at the edges: whatever arrives, the decoder answers
// { ok: true, value } or { ok: false, error: <a sentence> } and never throws.

const jsonish = fc.jsonValue({ maxDepth: 4 });
/** Frames that look almost right: real message types with random field values. */
const nearFrames = fc.record({
  type: fc.constantFrom('hello', 'accepted', 'step', 'log', 'artifact', 'state', 'availability', 'welcome', 'assign', 'cancel', 'error', 'bogus'),
  buildId: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
  attempt: fc.oneof(fc.integer(), fc.double()),
  data: fc.oneof(fc.string(), fc.integer()),
  name: fc.string(),
  state: fc.constantFrom('running', 'frozen', 'finished', 'nope'),
  result: fc.constantFrom('success', 'failure', null, 7),
}, { requiredKeys: ['type'] }).map((o) => JSON.stringify(o));
const frames = fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), jsonish.map((v) => JSON.stringify(v)), nearFrames);

function checkDecoded(r: { ok: boolean; error?: string }): void {
  if (!r.ok) assert.ok(typeof r.error === 'string' && r.error.length > 0);
}

test('worker and master frame decoders: 60,000 inputs, never a throw, always a verdict', () => {
  fc.assert(fc.property(frames, (text) => {
    checkDecoded(decodeWorkerMessage(text));
    checkDecoded(decodeMasterMessage(text));
  }), { numRuns: 30_000, seed: 42 });
  fc.assert(fc.property(frames, (text) => {
    checkDecoded(decodeWorkerMessage(text));
  }), { numRuns: 30_000, seed: 7 });
});

/** Log frames: random text after an "L", and headers with random numbers, separators and bodies. */
const logFrames = fc.oneof(
  fc.string({ maxLength: 40 }).map((t) => `L${t}`),
  fc.tuple(fc.oneof(fc.nat(), fc.integer(), fc.string({ maxLength: 12 })), fc.constantFrom(' ', '  ', '\t', ''),
    fc.oneof(fc.nat(), fc.integer(), fc.string({ maxLength: 12 })), fc.constantFrom('\n', '', '\r\n'), fc.string({ maxLength: 100 }))
    .map(([id, sep, attempt, nl, body]) => `L${id}${sep}${attempt}${nl}${body}`),
);

test('log frame decoder: 20,000 inputs, never a throw, always a verdict', () => {
  fc.assert(fc.property(logFrames, (text) => {
    const frame = new TextEncoder().encode(text);
    const r = decodeLogFrame(frame);
    if (r.ok) {
      assert.ok(Number.isInteger(r.value.buildId) && r.value.buildId >= 1 && r.value.attempt >= 1);
      assert.equal(r.value.data, text.slice(text.indexOf('\n') + 1));
    } else {
      assert.ok(r.error.length > 0);
    }
  }), { numRuns: 20_000, seed: 5 });
});

/** YAML-ish builder files: real keys with random values, random indentation, random text. */
const yamlText = fc.oneof(
  fc.string(),
  fc.array(fc.tuple(fc.constantFrom('description', 'steps', 'requires', 'limits', 'environment', 'source', 'artifacts', 'network', 'test-install', 'x'),
    fc.oneof(fc.string(), fc.integer().map(String), fc.constant('[a, b]'), fc.constant('{ time: 5m }'), fc.constant('\n  - run: make')),
    fc.nat(4)), { maxLength: 8 })
    .map((lines) => lines.map(([k, v, indent]) => `${' '.repeat(indent)}${k}: ${v}`).join('\n')),
);

test('builder-file parser: 15,000 inputs, never a throw; every error names the file', () => {
  fc.assert(fc.property(yamlText, (text) => {
    const r = parseBuilderFile('/cfg/builders/fuzz.yml', text, { configDir: '/cfg' });
    if (!r.ok) {
      assert.ok(r.errors.length > 0);
      for (const e of r.errors) assert.match(e, /^builders\/fuzz\.yml(:\d+:\d+)?: /);
    }
  }), { numRuns: 15_000, seed: 3 });
});

test('a live master takes 10,000 bad frames (JSON, log and binary) on one socket and many sockets, stays up, memory flat', async (t) => {
  const m = await testMaster({ b: 'requires: { executor: host }\nsteps:\n  - run: "true"\n' });
  t.after(() => m.close());
  const sample = fc.sample(frames, { numRuns: 10_000, seed: 11 });
  // One frame in ten is a log frame (valid or not, before any hello), one in ten a binary frame.
  const logSample = fc.sample(logFrames, { numRuns: 10_000, seed: 12 });
  const rssBefore = process.memoryUsage().rss;
  let answered = 0;
  // Unauthenticated sockets get an error per frame and are closed after 100 bad ones; reopen as needed.
  let i = 0;
  while (i < sample.length) {
    const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
    await new Promise((ok) => ws.once('open', ok));
    const closed = new Promise((ok) => ws.once('close', ok));
    ws.on('message', () => { answered++; });
    for (let k = 0; k < 100 && i < sample.length; k++, i++) ws.send(i % 10 === 9 ? logSample[i]! : i % 10 === 8 ? Buffer.from(logSample[i]!) : sample[i]!);
    await closed;
  }
  await until('answers', () => answered >= sample.length * 0.99, 30_000);
  global.gc?.();
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 100 * 1024 * 1024, `rss grew by ${Math.round(grown / 1048576)} MiB`);
  console.log(`fuzz: live master, ${sample.length} frames: rss ${Math.round(rssBefore / 1048576)} MiB before, grew ${Math.round(grown / 1048576)} MiB`);
  const health = await fetch(`${m.url}/healthz`);
  assert.equal(health.status, 200);
  // And a real worker can still connect and build.
  const token = await m.token('after-fuzz');
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  await new Promise((ok) => ws.once('open', ok));
  const first = new Promise<string>((ok) => ws.once('message', (d) => ok(d.toString())));
  ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, name: 'after-fuzz', token, agentVersion: 't',
    capabilities: { os: 'x', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1, diskBytes: 1, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false } }));
  assert.equal(JSON.parse(await first).type, 'welcome');
  ws.close();
});

/** Bodies for the agent's control API: the real keys with wrong, odd and right values. */
const controlBodies = fc.oneof(
  jsonish,
  fc.record({
    cpus: fc.oneof(fc.integer({ min: -5, max: 300 }), fc.double(), fc.string(), fc.constant(null)),
    memory: fc.oneof(fc.constantFrom('512m', '4g', '0', '-1g', 'lots'), fc.integer(), fc.constant(null)),
    when: fc.constantFrom('idle', 'always', 'never', 3),
    idleAfter: fc.oneof(fc.constantFrom('3m', '0s', 'soon'), fc.integer()),
    schedule: fc.oneof(fc.constantFrom('22:00-07:00', 'any', '25:00-01:00', ''), fc.string()),
    onBattery: fc.oneof(fc.boolean(), fc.string()),
    duration: fc.oneof(fc.constantFrom('1h', '5m', 'forever', ''), fc.integer()),
    idleMs: fc.oneof(fc.integer(), fc.double(), fc.string()),
    locked: fc.oneof(fc.boolean(), fc.integer()),
    suspended: fc.boolean(),
    extra: fc.string(),
  }, { requiredKeys: [] }),
);

test('control API body schemas: 10,000 inputs, never a throw, every refusal names a field or says why', () => {
  fc.assert(fc.property(controlBodies, (body) => {
    for (const schema of [PreferencesPatchSchema, IdleReportSchema, SnoozeRequestSchema]) {
      const r = schema.safeParse(body);
      if (!r.success) assert.ok(r.error.issues.length > 0 && r.error.issues.every((i) => i.message.length > 0));
    }
  }), { numRuns: 10_000, seed: 5 });
});

test('a live agent\'s control API takes 1,000 generated bodies and an oversized one: 4xx naming the problem, preferences stay valid', async (t) => {
  const m = await testMaster({});
  const dir = tempDir('fuzzw');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'app', master: m.url, token: await m.token('fz'), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const { url, secret } = JSON.parse(readFileSync(join(dir, 'control.json'), 'utf8')) as { url: string; secret: string };
  const call = (path: string, method: string, body?: string) => fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${secret}` }, ...(body !== undefined ? { body } : {}) });
  const statuses = new Map<number, number>();
  const paths = [['/api/v1/preferences', 'PATCH'], ['/api/v1/snooze', 'POST'], ['/api/v1/idle', 'POST']] as const;
  for (const [i, body] of fc.sample(controlBodies, { numRuns: 1_000, seed: 9 }).entries()) {
    const [path, method] = paths[i % paths.length]!;
    const r = await call(path, method, JSON.stringify(body));
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    const text = await r.text();
    assert.ok(r.status < 500, `${method} ${path} ${JSON.stringify(body)} -> ${r.status} ${text}`);
    if (r.status >= 400) assert.match((JSON.parse(text) as { error: string }).error, /\S/);
  }
  const big = await call('/api/v1/preferences', 'PATCH', JSON.stringify({ schedule: 'x'.repeat(100 * 1024) }));
  assert.equal(big.status, 413);
  assert.match(((await big.json()) as { error: string }).error, /too large/);
  const prefs = await call('/api/v1/preferences', 'GET');
  assert.equal(prefs.status, 200);
  assert.ok(statuses.get(400)! > 0 && [...statuses.keys()].some((s) => s < 300), JSON.stringify([...statuses]));
});

test('the BuildBot worker\'s msgpack connection takes 5,000 generated frames from a fake master and stays open', async (t) => {
  // A fake BuildBot master: a WebSocket server that sends the generated frames and collects
  // the worker's answers (every well-formed request gets exactly one response).
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  t.after(() => new Promise<void>((ok) => wss.close(() => ok())));
  await new Promise((ok) => wss.once('listening', ok));
  const port = (wss.address() as { port: number }).port;
  const peer = new Promise<WebSocket>((ok) => wss.once('connection', ok));
  const handled: unknown[] = [];
  const lines: string[] = [];
  const conn = await MsgpackConnection.open(`ws://127.0.0.1:${port}`, 'fuzz', 'pw', (msg) => {
    handled.push(msg.op);
    if (msg.op === 'boom') throw new Error('no such command');
    return 'ok';
  }, (l) => lines.push(l));
  const ws = await peer;
  let responses = 0;
  ws.on('message', () => { responses++; });
  const encoder = new Encoder();
  const values = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((v) => encoder.encode(v)),
    fc.uint8Array({ maxLength: 200 }),
    fc.record({
      op: fc.oneof(fc.constantFrom('print', 'keepalive', 'boom', 'response', 'start_command'), fc.integer()),
      seq_number: fc.oneof(fc.integer({ min: 0, max: 1_000_000 }), fc.string(), fc.double()),
      args: fc.jsonValue({ maxDepth: 2 }),
      is_exception: fc.boolean(),
    }, { requiredKeys: [] }).map((v) => encoder.encode(v)),
  );
  const frames = fc.sample(values, { numRuns: 5_000, seed: 13 });
  let wellFormed = 0;
  for (const f of frames) {
    ws.send(f, { binary: true });
    // Count the requests the worker must answer: a map with a string op (not a response) and a numeric seq_number.
    try {
      const v = decode(f) as Record<string, unknown>;
      if (v && typeof v === 'object' && !Array.isArray(v) && typeof v.op === 'string' && v.op !== 'response' && typeof v.seq_number === 'number') wellFormed++;
    } catch { /* undecodable: ignored by the worker */ }
  }
  await until('an answer to every well-formed request', () => responses >= wellFormed, 30_000);
  assert.equal(responses, wellFormed);
  assert.ok(conn.isOpen, 'the connection is still open');
  assert.ok(lines.some((l) => /undecodable frame|not a msgpack map|without op\/seq_number/.test(l)), lines.slice(0, 5).join('\n'));
  conn.close();
});

test('oversized frames and uploads are refused by limit: a 5 MiB frame, a 100 KiB REST body, an artifact over maxArtifactSize', async (t) => {
  const m = await testMaster({ b: 'requires: { executor: host }\nsteps:\n  - run: "true"\nartifacts: ["*.bin"]\n' }, { maxArtifactBytes: 1000 });
  t.after(() => m.close());
  const big = await fetch(`${m.url}/api/v1/builders/b/builds`, { method: 'POST', headers: { authorization: `Bearer ${m.adminToken}` }, body: JSON.stringify({ reason: 'x'.repeat(100 * 1024) }) });
  assert.equal(big.status, 413);
  assert.match(((await big.json()) as { error: string }).error, /request body exceeds 65536 bytes/);
  // A worker (raw socket) that is assigned a build and announces a 5,000-byte artifact.
  const token = await m.token('up');
  const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
  const inbox: { type: string; buildId?: number; attempt?: number }[] = [];
  ws.on('message', (d) => inbox.push(JSON.parse(d.toString())));
  await new Promise((ok) => ws.once('open', ok));
  ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, name: 'up', token, agentVersion: 't',
    capabilities: { os: 'x', platform: 'linux', arch: 'x64', cpus: 1, memoryBytes: 1, diskBytes: 1, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false } }));
  const id = await m.force('b');
  const assign = await until('the assignment', () => inbox.find((x) => x.type === 'assign'));
  const ref = { buildId: assign.buildId!, attempt: assign.attempt! };
  const data = Buffer.alloc(5000, 7);
  ws.send(JSON.stringify({ type: 'artifact', ...ref, name: 'big.bin', size: data.length, sha256: createHash('sha256').update(data).digest('hex'), offset: 0, data: data.toString('base64'), last: true }));
  ws.send(JSON.stringify({ type: 'state', ...ref, state: 'finished', result: 'success', message: null }));
  await m.waitFinished(id, 10_000);
  const log = await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text();
  assert.match(log, /artifact refused: artifact big\.bin: 5000 bytes exceeds the limit of 1000/);
  assert.deepEqual(await m.get(`/api/v1/builds/${id}/artifacts`), []);
  // And a frame over 4 MiB closes the socket with 1009 before it is parsed.
  const closed = new Promise<number>((ok) => ws.once('close', ok));
  ws.send('x'.repeat(5 * 1024 * 1024));
  assert.equal(await closed, 1009);
});
