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

// Per-worker concurrency: a worker offering two slots never runs more than two builds at once.
test('a worker runs at most its maxBuilds at once', async (t) => {
  const m = await testMaster({ s: 'requires: { executor: host }\nsteps:\n  - run: sleep 0.6\n' });
  const ids: number[] = [];
  for (let i = 0; i < 6; i++) ids.push(await m.force('s'));
  const dir = tempDir('w');
  const w = await startWorker({ master: m.url, token: await m.token('w2'), dataDir: dir, executor: 'host', labels: [], maxBuilds: 2, idleSource: 'none', preferences: { when: 'always' }, log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  let running = 0;
  let most = 0;
  const off = m.events.subscribe((e) => {
    if (e.type === 'worker' && e.worker.name === 'w2') { running = e.worker.builds.length; most = Math.max(most, running); }
  });
  t.after(off);
  const done: BuildView[] = [];
  for (const id of ids) done.push(await m.waitFinished(id, 30_000));
  assert.ok(done.every((b) => b.result === 'success' && b.worker === 'w2'));
  assert.equal(most, 2, 'two builds ran side by side, never three');
  // The same from the builds' own times: at no start were two others still running.
  for (const b of done) {
    const at = Date.parse(b.startedAt!);
    const overlapping = done.filter((o) => o.id !== b.id && Date.parse(o.startedAt!) <= at && Date.parse(o.finishedAt!) > at);
    assert.ok(overlapping.length <= 1, `build ${b.id} started while ${overlapping.map((o) => o.id)} ran`);
  }
});

// os/arch/cpus requirements against a real worker's report: what it cannot run waits and says why.
test('requires os, arch and cpus: a builder the worker cannot run waits, and the API says why', async (t) => {
  const here = process.arch;
  const other = here === 'arm64' ? 'x64' : 'arm64';
  const m = await testMaster({
    fits: `requires: { executor: host, os: linux, arch: [${here}], cpus: 1 }\nsteps:\n  - run: "true"\n`,
    mac: 'requires: { executor: host, os: macos }\nsteps:\n  - run: "true"\n',
    arm: `requires: { executor: host, arch: ${other} }\nsteps:\n  - run: "true"\n`,
    big: 'requires: { executor: host, cpus: 512 }\nsteps:\n  - run: "true"\n',
  });
  const dir = tempDir('w');
  const w = await startWorker({ master: m.url, token: await m.token('w3'), dataDir: dir, executor: 'host', labels: [], idleSource: 'none', preferences: { when: 'always' }, log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const ids = { fits: await m.force('fits'), mac: await m.force('mac'), arm: await m.force('arm'), big: await m.force('big') };
  assert.equal((await m.waitFinished(ids.fits, 30_000)).result, 'success');
  const views = await m.get<{ name: string; runnable: boolean; unrunnable: string | null }[]>('/api/v1/builders');
  const why = (n: string) => views.find((v) => v.name === n)!;
  assert.deepEqual([why('fits').runnable, why('fits').unrunnable], [true, null]);
  assert.match(why('mac').unrunnable!, /^no connected worker can run it: w3 runs linux, the builder needs darwin$/);
  assert.match(why('arm').unrunnable!, new RegExp(`^no connected worker can run it: w3 is ${here}, the builder needs ${other}$`));
  assert.match(why('big').unrunnable!, /^no connected worker can run it: w3 offers \d+ CPUs?, the builder needs 512$/);
  for (const id of [ids.mac, ids.arm, ids.big]) assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'queued');
});
