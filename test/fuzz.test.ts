import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import WebSocket from 'ws';
import { decodeMasterMessage, decodeWorkerMessage } from '../protocol/worker-messages.js';
import { parseBuilderFile } from '../master/config/builder-file-loader.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import { testMaster, until } from './helpers/cluster.js';

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

test('worker and master frame decoders: 100,000 inputs, never a throw, always a verdict', () => {
  fc.assert(fc.property(frames, (text) => {
    checkDecoded(decodeWorkerMessage(text));
    checkDecoded(decodeMasterMessage(text));
  }), { numRuns: 50_000, seed: 42 });
  fc.assert(fc.property(frames, (text) => {
    checkDecoded(decodeWorkerMessage(text));
  }), { numRuns: 50_000, seed: 7 });
});

/** YAML-ish builder files: real keys with random values, random indentation, random text. */
const yamlText = fc.oneof(
  fc.string(),
  fc.array(fc.tuple(fc.constantFrom('description', 'steps', 'requires', 'limits', 'environment', 'source', 'artifacts', 'network', 'test-install', 'x'),
    fc.oneof(fc.string(), fc.integer().map(String), fc.constant('[a, b]'), fc.constant('{ time: 5m }'), fc.constant('\n  - run: make')),
    fc.nat(4)), { maxLength: 8 })
    .map((lines) => lines.map(([k, v, indent]) => `${' '.repeat(indent)}${k}: ${v}`).join('\n')),
);

test('builder-file parser: 20,000 inputs, never a throw; every error names the file', () => {
  fc.assert(fc.property(yamlText, (text) => {
    const r = parseBuilderFile('/cfg/builders/fuzz.yml', text, { configDir: '/cfg' });
    if (!r.ok) {
      assert.ok(r.errors.length > 0);
      for (const e of r.errors) assert.match(e, /^builders\/fuzz\.yml(:\d+:\d+)?: /);
    }
  }), { numRuns: 20_000, seed: 3 });
});

test('a live master takes 10,000 bad frames on one socket and many sockets, stays up, memory flat', async (t) => {
  const m = await testMaster({ b: 'requires: { executor: host }\nsteps:\n  - run: "true"\n' });
  t.after(() => m.close());
  const sample = fc.sample(frames, { numRuns: 10_000, seed: 11 });
  const rssBefore = process.memoryUsage().rss;
  let answered = 0;
  // Unauthenticated sockets get an error per frame and are closed after 100 bad ones; reopen as needed.
  let i = 0;
  while (i < sample.length) {
    const ws = new WebSocket(`${m.url.replace('http', 'ws')}/api/v1/worker`);
    await new Promise((ok) => ws.once('open', ok));
    const closed = new Promise((ok) => ws.once('close', ok));
    ws.on('message', () => { answered++; });
    for (let k = 0; k < 100 && i < sample.length; k++, i++) ws.send(sample[i]!);
    await closed;
  }
  await until('answers', () => answered >= sample.length * 0.99, 30_000);
  global.gc?.();
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 100 * 1024 * 1024, `rss grew by ${Math.round(grown / 1048576)} MiB`);
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
