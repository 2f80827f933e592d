import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildView } from '../protocol/api.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster } from './helpers/cluster.js';

// One worker with two slots and a queue of five builds: the high-priority builder goes
// first; then builders share the slots fairly instead of the oldest builder taking them all.
test('priority first, then fair share between builders, then age', async (t) => {
  const slow = (s: number, extra = '') => `requires: { executor: host }\n${extra}steps:\n  - run: sleep ${s}\n`;
  const m = await testMaster({ a: slow(1), b: slow(1), c: slow(0.2, 'priority: 5\n') });
  const ids = { a1: await m.force('a'), a2: await m.force('a'), a3: await m.force('a'), b1: await m.force('b'), c1: await m.force('c') };
  const dir = tempDir('w');
  const w = await startWorker({ master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], maxBuilds: 2, idleSource: 'none', preferences: { when: 'always' }, log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const done: BuildView[] = [];
  for (const id of Object.values(ids)) done.push(await m.waitFinished(id, 30_000));
  assert.ok(done.every((b) => b.result === 'success'));
  const order = Object.entries(ids).sort(([, x], [, y]) => Date.parse(done.find((b) => b.id === x)!.startedAt!) - Date.parse(done.find((b) => b.id === y)!.startedAt!) || x - y).map(([k]) => k);
  assert.equal(order[0] === 'c1' || order[1] === 'c1', true, `c1 (priority 5) starts in the first pair: ${order}`);
  assert.ok(order.indexOf('b1') < order.indexOf('a2'), `b1 gets a slot before a's second build: ${order}`);
  assert.ok(order.indexOf('a1') < order.indexOf('a2') && order.indexOf('a2') < order.indexOf('a3'), `a builder's own builds go oldest first: ${order}`);
});
