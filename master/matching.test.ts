import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuilderDefinition } from '../protocol/builder-file.js';
import { executorFor, mismatch, pickWorker, whyUnrunnable, type WorkerOffer } from './matching.js';

const builder = (labels: string[], executor: BuilderDefinition['requires']['executor']): BuilderDefinition => ({
  name: 'b', description: '', source: null, requires: { labels, executor }, priority: 0, collapse: true,
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

test('a pick stops at the first capable idle worker: with 10,000 workers it looks at the busy ones ahead of it, not at all of them', () => {
  const b = builder([], 'container');
  const workers = Array.from({ length: 10_000 }, (_, i) => worker(`w${i}`, [], i === 5 ? ['host'] : ['container'], i < 3 ? 1 : 0, 1));
  let looked = 0;
  function* counted(): Iterable<WorkerOffer> {
    for (const w of workers) { looked++; yield w; }
  }
  // w0-w2 are busy, w3 is idle and capable: it is the pick, and the walk ends there.
  assert.equal(pickWorker(b, counted())?.worker.name, 'w3');
  assert.equal(looked, 4);
  // A worker half loaded does not end the walk: an idle one further on is less loaded.
  const half = worker('half', [], ['container'], 1, 2);
  const rest = [half, worker('busy', [], ['container'], 1, 1), worker('idle', [], ['container'], 0, 4)];
  assert.equal(pickWorker(b, rest)?.worker.name, 'idle');
  // An idle worker that cannot run the builder does not end it either.
  assert.equal(pickWorker(b, [worker('hostonly', [], ['host']), half])?.worker.name, 'half');
});

test('memory and disk a builder needs must be on offer; the reason says what is short', async () => {
  const { mismatch } = await import('./matching.js');
  const b = builder([], 'container');
  b.spec.limits = { memoryBytes: 8 * 1024 ** 3, diskBytes: 10 * 1024 ** 3 };
  const small = { ...worker('small', [], ['container']), memoryBytes: 2 * 1024 ** 3, diskBytes: 100 * 1024 ** 3 };
  const big = { ...worker('big', [], ['container']), memoryBytes: 16 * 1024 ** 3, diskBytes: 100 * 1024 ** 3 };
  assert.equal(mismatch(b, small), 'offers 2.0 GiB of memory, the builder needs 8.0 GiB');
  assert.equal(pickWorker(b, [small, big])?.worker.name, 'big');
  assert.equal(mismatch(builder(['gpu'], 'any'), worker('w', [], ['container'])), 'lacks label gpu');
  assert.equal(mismatch(builder([], 'vm'), worker('w', [], ['container'])), 'has no vm executor');
});

test('os, arch and CPUs a builder requires are matched against what the worker reported', () => {
  const b = { ...builder([], 'host'), requires: { labels: [], executor: 'host' as const, os: ['linux'], arch: ['x64', 'arm64'], cpus: 4 } };
  const w = (platform: string | undefined, arch: string | undefined, cpus: number) => ({ ...worker('w', [], ['host']), ...(platform ? { platform } : {}), ...(arch ? { arch } : {}), cpus });
  assert.equal(mismatch(b, w('linux', 'x64', 4)), null);
  assert.equal(mismatch(b, w('linux', 'arm64', 8)), null);
  assert.equal(mismatch(b, w('darwin', 'arm64', 8)), 'runs darwin, the builder needs linux');
  assert.equal(mismatch(b, w('Windows', 'x64', 8)), 'runs Windows, the builder needs linux');
  assert.equal(mismatch(b, w('linux', 'riscv64', 8)), 'is riscv64, the builder needs x64 or arm64');
  assert.equal(mismatch(b, w('linux', 'x64', 2)), 'offers 2 CPUs, the builder needs 4');
  assert.equal(mismatch(b, w(undefined, 'x64', 8)), 'runs an unknown os, the builder needs linux');
  assert.equal(pickWorker(b, [w('darwin', 'x64', 8), w('linux', 'ia32', 8)]), null);
  const win = { ...b, requires: { ...b.requires, os: ['win32'] } };
  assert.equal(mismatch(win, w('Windows', 'x64', 8)), null, "systeminformation's \"Windows\" is win32");
});

test('a builder no worker can run says why, worker by worker', () => {
  const b = builder(['gpu'], 'container');
  assert.equal(whyUnrunnable(b, []), 'no worker is connected');
  assert.equal(whyUnrunnable(b, [worker('a', [], ['container']), worker('b', ['gpu'], ['host'])]),
    'no connected worker can run it: a lacks label gpu; b has no container executor');
  assert.equal(whyUnrunnable(b, [worker('a', [], ['container']), worker('c', ['gpu'], ['container'], 1, 1)]), null, 'a busy capable worker will run it');
});

test('requires.trust: trusted: only a worker whose trust is trusted can run it; absent trust counts as not trusted', () => {
  const b = { ...builder([], 'container'), requires: { labels: [], executor: 'container' as const, trust: 'trusted' as const } };
  const w = worker('w', [], ['container']);
  assert.equal(mismatch(b, w), 'belongs to a volunteer whose trust is unknown; the builder needs trust: trusted');
  assert.equal(mismatch(b, { ...w, trust: 'new' }), 'belongs to a volunteer whose trust is new; the builder needs trust: trusted');
  assert.equal(mismatch(b, { ...w, trust: 'banned' }), 'belongs to a volunteer whose trust is banned; the builder needs trust: trusted');
  assert.equal(mismatch(b, { ...w, trust: 'trusted' }), null);
  assert.equal(pickWorker(b, [{ ...w, name: 'n', trust: 'new' }, { ...w, name: 't', trust: 'trusted', running: 0, maxBuilds: 1 }])?.worker.name, 't');
  assert.equal(mismatch(builder([], 'container'), { ...w, trust: 'new' }), null, 'other builders do not care');
});

test('executors are names on the wire: a newer worker\'s unknown executor passes the hello and is never assigned; a builder file\'s typo is refused', async () => {
  const { CapabilitiesSchema } = await import('../protocol/from-worker.js');
  const { BuilderFileSchema } = await import('../protocol/builder-file.js');
  const caps = { os: 'linux', platform: 'linux', arch: 'x64', cpus: 2, memoryBytes: 1, diskBytes: 1, labels: [], maxBuilds: 1, virtualization: false };
  const offered = CapabilitiesSchema.parse({ ...caps, executors: ['firecracker', 'container'] }).executors;
  assert.deepEqual(offered, ['firecracker', 'container']);
  assert.equal(CapabilitiesSchema.safeParse({ ...caps, executors: ['Fire Cracker'] }).success, false, 'a name is still checked');
  assert.equal(CapabilitiesSchema.safeParse({ ...caps, executors: Array.from({ length: 33 }, (_, i) => `e${i}`) }).success, false, 'and so is their number');
  assert.equal(executorFor(builder([], 'any'), worker('new', [], offered)), 'container', '"any" still picks a known isolated one');
  assert.equal(executorFor(builder([], 'any'), worker('new', [], ['firecracker'])), null, 'an executor this master does not know is never "any"');
  const typo = BuilderFileSchema.safeParse({ requires: { executor: 'firecrackr' }, steps: [{ run: 'true' }] });
  assert.equal(typo.success, false);
  assert.deepEqual(typo.error?.issues.map((i) => [i.path.join('.'), i.code]), [['requires.executor', 'invalid_value']]);
});
