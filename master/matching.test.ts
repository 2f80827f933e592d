import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuilderDefinition } from '../protocol/builder-file.js';
import { executorFor, pickWorker, type WorkerOffer } from './matching.js';

const builder = (labels: string[], executor: BuilderDefinition['requires']['executor']): BuilderDefinition => ({
  name: 'b', description: '', source: null, requires: { labels, executor },
  spec: { builder: 'b', source: null, executor, environment: { base: 'busybox', setup: [] }, steps: [{ name: 's', run: 'true', env: {} }], artifacts: [], limits: {}, network: false, testInstall: null },
});
const worker = (name: string, labels: string[], executors: WorkerOffer['executors'], running = 0, maxBuilds = 1): WorkerOffer =>
  ({ name, labels: new Set(labels), executors, running, maxBuilds, accepting: true });

test('labels must all be present; "any" means an isolated executor, never host', () => {
  assert.equal(executorFor(builder(['linux'], 'any'), worker('a', ['linux', 'x86'], ['container'])), 'container');
  assert.equal(executorFor(builder(['linux', 'arm'], 'any'), worker('a', ['linux'], ['container'])), null);
  assert.equal(executorFor(builder([], 'any'), worker('a', [], ['host'])), null);
  assert.equal(executorFor(builder([], 'any'), worker('a', [], ['vm'])), 'vm');
  assert.equal(executorFor(builder([], 'host'), worker('a', [], ['container', 'host'])), 'host');
  assert.equal(executorFor(builder([], 'vm'), worker('a', [], ['container'])), null);
});

test('the least loaded capable worker with a free slot is picked', () => {
  const b = builder([], 'container');
  const busy = worker('busy', [], ['container'], 1, 1);
  const half = worker('half', [], ['container'], 1, 2);
  const idle = worker('idle', [], ['container'], 0, 2);
  const wrong = worker('wrong', [], ['host'], 0, 4);
  assert.equal(pickWorker(b, [busy, half, idle, wrong])?.worker.name, 'idle');
  assert.equal(pickWorker(b, [busy, half])?.worker.name, 'half');
  assert.equal(pickWorker(b, [busy, wrong]), null);
  assert.equal(pickWorker(b, [busy, half, { ...idle, accepting: false }])?.worker.name, 'half');
});
