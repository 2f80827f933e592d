import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMasterConfig } from './config/master-config.js';
import { baseNamePattern, BuildUsage, DEFAULT_BUILD_CAPS } from './worker-bounds.js';

const ref = { buildId: 1, attempt: 1 };
const spec = { steps: [{ name: 'a', run: 'x', env: {} }], testInstall: { environment: { base: 'busybox', setup: [] }, steps: [{ name: 't', run: 'y', env: {} }] }, artifacts: ['dist/*.deb', 'out/**'] };
const chunk = (name: string, size: number, last: boolean, offset = 0) =>
  ({ type: 'artifact' as const, ...ref, name, size, sha256: '0'.repeat(64), offset, data: '', last });

test('artifact patterns bound the base names a worker may upload', () => {
  assert.ok(baseNamePattern('dist/*.deb').test('hello_1.0_amd64.deb'));
  assert.ok(!baseNamePattern('dist/*.deb').test('hello.tar.gz'));
  assert.ok(baseNamePattern('out/**').test('anything.bin'));
  assert.ok(baseNamePattern('**/*.tar.gz').test('a.tar.gz'));
  assert.ok(baseNamePattern('a?.txt').test('ab.txt'));
  assert.ok(!baseNamePattern('dist/').test('x'));
});

test('step indexes count the test-install steps; the first index past them is refused naming step.index', () => {
  const u = new BuildUsage(spec, DEFAULT_BUILD_CAPS);
  const step = (index: number) => u.check({ type: 'step', ...ref, index, name: 'x', state: 'running', result: null, exitCode: null });
  assert.equal(step(0), null);
  assert.equal(step(1), null);
  assert.deepEqual(step(2), { kind: 'violation', field: 'step.index', message: '2 is not a step of this build (it has 2, numbered from 0)' });
  assert.equal(step(Number.MAX_SAFE_INTEGER)?.kind, 'violation');
});

test('one upload at a time, each name once, count and bytes capped', () => {
  const u = new BuildUsage(spec, { ...DEFAULT_BUILD_CAPS, artifactCount: 2, artifactBytes: 10 });
  assert.equal(u.check(chunk('a.deb', 4, false)), null);
  assert.equal(u.check(chunk('b.deb', 1, false))?.kind, 'violation');
  assert.equal(u.check(chunk('a.deb', 4, true, 2)), null);
  assert.match((u.check(chunk('a.deb', 4, true)) as { message: string }).message, /already uploaded/);
  assert.match((u.check(chunk('b.deb', 7, true)) as { message: string }).message, /limit of 10 B in all/);
  assert.equal(u.check(chunk('b.deb', 6, true)), null);
  assert.match((u.check(chunk('c.deb', 0, true)) as { message: string }).message, /more than 2 artifacts/);
  assert.equal(u.check(chunk('x', 1, true, 5))?.kind, 'violation');
});

test('crowdbake.yml limits: defaults, values, and bad values named', () => {
  const d = parseMasterConfig('crowdbake.yml', 'title: x\n');
  assert.ok(d.ok);
  assert.deepEqual(d.config.limits, DEFAULT_BUILD_CAPS);
  assert.deepEqual(DEFAULT_BUILD_CAPS, { logBytes: 256 * 1024 ** 2, artifactCount: 100, artifactBytes: 4 * 1024 ** 3, uploadStallMs: 120_000, defaultTimeMs: 6 * 3600_000, timeGraceMs: 900_000, frozenTimeMs: 24 * 3600_000 });
  const v = parseMasterConfig('crowdbake.yml', 'limits:\n  logSize: 1m\n  artifactCount: 5\n  artifactsSize: 2g\n  uploadStall: 30s\n  defaultTime: 2h\n  timeGrace: 5m\n  frozenTime: 1h\n');
  assert.ok(v.ok);
  assert.deepEqual(v.config.limits, { logBytes: 1024 ** 2, artifactCount: 5, artifactBytes: 2 * 1024 ** 3, uploadStallMs: 30_000, defaultTimeMs: 7_200_000, timeGraceMs: 300_000, frozenTimeMs: 3_600_000 });
  const bad = parseMasterConfig('crowdbake.yml', 'limits:\n  logSize: lots\n  uploadStall: 0\n  artifactCount: -1\n  bogus: 1\n');
  assert.ok(!bad.ok);
  const text = bad.errors.join('\n');
  for (const key of ['limits.logSize', 'limits.uploadStall', 'limits.artifactCount', '"bogus"']) assert.match(text, new RegExp(key.replace('.', '\\.')), text);
});

test('the log cap counts UTF-8 bytes, whether the text came as a string (JSON log) or as a log frame\'s bytes', () => {
  const u = new BuildUsage(spec, { ...DEFAULT_BUILD_CAPS, logBytes: 10 });
  assert.equal(u.check({ type: 'log', ...ref, data: 'é😀' }), null); // 6 bytes
  assert.equal(u.check({ type: 'log', ...ref, data: Buffer.from('abcd') }), null); // 10
  assert.equal(u.logBytes, 10);
  assert.equal(u.check({ type: 'log', ...ref, data: new Uint8Array(1) })?.kind, 'cap');
});
