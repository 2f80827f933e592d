import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { builder, memoryFarm, type MemoryFarm } from '../../test/helpers/in-memory-farm.js';
import type { MasterMessage } from '../../protocol/worker-messages.js';
import { createWorkerToken } from '../tokens.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from './postgres-test-db.js';

// Two masters (real coordinators and worker hubs) on one real PostgreSQL database, their
// workers' real MasterLinks joined by in-memory sockets (test/helpers/linked-sockets.ts).
const server = process.env[TEST_POSTGRES_ENV];
const skip = server ? false : NO_TEST_POSTGRES;

async function twoFarms(t: { after: (f: () => Promise<void>) => void }): Promise<{ a: MemoryFarm; b: MemoryFarm; dbs: TestDatabases; url: string }> {
  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const a = await memoryFarm([builder('b')], { storeUrl: url });
  const b = await memoryFarm([builder('b')], { storeUrl: url });
  t.after(async () => { await a.close(); await b.close(); await dbs.dropAll(); });
  return { a, b, dbs, url };
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (await check()) return;
    await turn();
  }
  throw new Error('condition never met');
}

test('two masters: a worker whose master connection is lost reconnects to the other, which adopts its running attempt; the build finishes once, as attempt 1', { skip }, async (t) => {
  const { a, b } = await twoFarms(t);
  const { id } = await a.coordinator.requestBuild('b', {});
  const running: { buildId: number; attempt: number }[] = [];
  const w = await a.worker('w1', { hubs: [a.hub, b.hub], running: () => running });
  const assign = await w.next('assign');
  assert.equal(assign.attempt, 1);
  running.push({ buildId: id, attempt: 1 });
  await w.link.send({ type: 'accepted', buildId: id, attempt: 1 });
  await w.link.sendLog(id, 1, 'before the fail-over\n');
  await until(async () => (await a.log(id)).includes('before the fail-over'));
  // The connection to master A dies; the link holds the build and dials master B.
  let released = false;
  w.link.on('released', () => { released = true; });
  w.masterEnd().terminate();
  // Written while between masters: held, then delivered to B once it welcomed the worker.
  const during = w.link.sendLog(id, 1, 'during the fail-over\n');
  await w.connected();
  await during;
  await w.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'success', message: null });
  await until(async () => (await b.store.getBuild(id))?.state === 'finished');
  const row = (await b.store.getBuild(id))!;
  assert.equal(row.result, 'success');
  assert.equal(row.attempt, 1, 'adopted, not restarted');
  assert.equal(b.coordinator.adoptedCount, 1);
  assert.equal(released, false);
  assert.match(await b.log(id), /during the fail-over/);
  assert.match(await b.log(id), /attempt 1 adopted by master/);
  assert.equal(w.received.filter((m) => m.type === 'cancel').length, 0, 'nothing was cancelled');
  assert.equal(w.received.filter((m) => m.type === 'assign').length, 1, 'no second copy was assigned');
});

test('adversary: a worker naming another worker\'s running attempt in its hello gets it cancelled, and the build is untouched', { skip }, async (t) => {
  const { a, b } = await twoFarms(t);
  const { id } = await a.coordinator.requestBuild('b', {});
  const w1 = await a.worker('w1');
  await w1.next('assign');
  const before = (await b.store.getBuild(id))!;
  const token = await createWorkerToken(b.store, 'w2', []);
  const w2 = await b.worker('w2', { token, running: () => [{ buildId: id, attempt: 1 }] });
  const cancel = await w2.next('cancel');
  assert.equal(cancel.buildId, id);
  assert.match(cancel.reason, /not current/);
  assert.equal(b.coordinator.adoptedCount, 0);
  // w2's frames about it are not applied: the build still belongs to w1 on master A.
  await w2.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'failure', message: 'hijack' });
  await w1.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'success', message: null });
  await until(async () => (await a.store.getBuild(id))?.state === 'finished');
  const after = (await a.store.getBuild(id))!;
  assert.equal(after.result, 'success');
  assert.equal(after.worker, before.worker);
});

test('two masters: one whose lease ran out cannot finish the build; it tells its worker to stop, and the other master runs it as attempt 2', { skip }, async (t) => {
  const { a, b, dbs, url } = await twoFarms(t);
  const { id } = await a.coordinator.requestBuild('b', {});
  const wa = await a.worker('wa');
  await wa.next('assign');
  // Master A is paused past its lease (as SIGSTOP would): the database says it is gone.
  await dbs.sql(url, `UPDATE masters SET alive_until = now() - interval '1 second' WHERE id = $1`, [a.store.claims!.holder]);
  // Its worker's next step cannot be recorded by A (fenced): A lets the attempt go and stops it.
  await wa.link.send({ type: 'step', buildId: id, attempt: 1, index: 0, name: 'step-1', state: 'running', result: null, exitCode: null });
  const cancel = await wa.next('cancel');
  assert.equal(cancel.attempt, 1);
  assert.match(cancel.reason, /no longer holds/);
  await wa.link.send({ type: 'state', buildId: id, attempt: 1, state: 'finished', result: 'success', message: 'from a master that lost its lease' });
  assert.notEqual((await b.store.getBuild(id))?.state, 'finished', 'the fenced-off master did not finish it');
  // B reaps it and runs it on its own worker.
  assert.equal(await b.coordinator.reap(), 1);
  const wb = await b.worker('wb');
  const again = await wb.next('assign');
  assert.equal(again.attempt, 2);
  await wb.link.send({ type: 'state', buildId: id, attempt: 2, state: 'finished', result: 'success', message: null });
  await until(async () => (await b.store.getBuild(id))?.state === 'finished');
  const row = (await b.store.getBuild(id))!;
  assert.equal(row.attempt, 2);
  assert.equal(row.worker, 'wb');
  assert.equal(row.message, null);
});

test('two masters: a queued build is run once, by whichever master claims it for its worker', { skip }, async (t) => {
  const { a, b } = await twoFarms(t);
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) ids.push((await a.coordinator.requestBuild('b', {})).id);
  await b.coordinator.refreshQueue();
  const wa = await a.worker('wa', { maxBuilds: 4 });
  const wb = await b.worker('wb', { maxBuilds: 4 });
  const done = new Set<number>();
  const twice: number[] = [];
  const serve = (w: typeof wa) => {
    const run = (m: MasterMessage) => {
      if (m.type !== 'assign') return;
      if (done.has(m.buildId)) twice.push(m.buildId);
      done.add(m.buildId);
      void w.link.send({ type: 'state', buildId: m.buildId, attempt: m.attempt, state: 'finished', result: 'success', message: null });
    };
    for (const m of w.received) run(m);
    w.link.on('message', run);
  };
  serve(wa);
  serve(wb);
  await until(async () => (await Promise.all(ids.map((id) => a.store.getBuild(id)))).every((r) => r?.state === 'finished'));
  for (const id of ids) assert.equal((await a.store.getBuild(id))!.attempt, 1);
  assert.deepEqual(twice, [], 'no build was assigned twice');
  assert.equal(done.size, ids.length);
});

test('wake-ups: a build its own master places at once wakes no other master; one it cannot place does, and the other master runs it', { skip }, async (t) => {
  const { a, b } = await twoFarms(t);
  const claims = a.store.claims!;
  const wake = claims.wake.bind(claims);
  let wakes = 0;
  claims.wake = async () => { wakes++; await wake(); };
  // As master.ts wires it: b refreshes its queue when woken, through a real LISTEN.
  const stopListening = await b.store.claims!.onWake(() => void b.coordinator.refreshQueue());
  t.after(stopListening);
  const wa = await a.worker('wa', { maxBuilds: 1 });
  const first = await a.coordinator.requestBuild('b', {});
  await wa.next('assign', (m) => m.buildId === first.id);
  await turn();
  assert.equal(wakes, 0, 'placed on its own worker: nobody else needed waking');
  // wa is busy (it never finishes): the next build stays in a's queue, so b is woken and its worker runs it.
  const wb = await b.worker('wb', { maxBuilds: 1 });
  const second = await a.coordinator.requestBuild('b', {});
  await turn();
  assert.equal(wakes, 1, 'not placeable here: the other masters were woken');
  const got = await wb.next('assign', (m) => m.buildId === second.id);
  assert.equal(got.attempt, 1);
  assert.equal(wa.received.some((m) => m.type === 'assign' && m.buildId === second.id), false);
});
