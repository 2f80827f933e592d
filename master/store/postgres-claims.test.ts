import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { PostgresStore } from './postgres-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from './postgres-test-db.js';

// Claims, fences and leases of several masters on one PostgreSQL (claims.ts), two stores
// standing for two masters on one real database.
const server = process.env[TEST_POSTGRES_ENV];
const skip = server ? false : NO_TEST_POSTGRES;

async function twoMasters(t: { after: (f: () => Promise<void>) => void }, leaseMs = 60_000) {
  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const a = await PostgresStore.open(url);
  const b = await PostgresStore.open(url);
  t.after(async () => { await a.close(); await b.close(); await dbs.dropAll(); });
  await a.claims.join('http://a', leaseMs);
  await b.claims.join('http://b', leaseMs);
  return { a, b, dbs, url };
}

const newBuild = { builder: 'b', revision: null, reason: null, queuedAt: new Date().toISOString() };
/** Waits (polling the database's own clock) until master `id`'s lease has run out. */
async function untilExpired(dbs: TestDatabases, url: string, id: string): Promise<void> {
  for (;;) {
    const [r] = await dbs.sql<{ live: boolean }>(url, 'SELECT alive_until > now() AS live FROM masters WHERE id = $1', [id]);
    if (!r?.live) return;
    await sleep(50);
  }
}

test('claims: of two masters claiming one queued build at once, exactly one gets it, as attempt 1', { skip }, async (t) => {
  const { a, b } = await twoMasters(t);
  for (let i = 0; i < 20; i++) {
    const row = await a.insertBuild(newBuild);
    const [ra, rb] = await Promise.all([a.claims.claim(row.id, 0, 'wa', 'now'), b.claims.claim(row.id, 0, 'wb', 'now')]);
    assert.equal([ra, rb].filter((r) => r !== null).length, 1, `build ${row.id}: one claim wins`);
    const won = (ra ?? rb)!;
    assert.equal(won.attempt, 1);
    assert.equal(won.state, 'running');
    // A claim at an attempt that is not the row's any more fails too.
    assert.equal(await a.claims.claim(row.id, 0, 'wa', 'now'), null);
  }
});

test('claims: a write about an attempt lands only from its holder, at that attempt, while its lease runs', { skip }, async (t) => {
  const { a, b, dbs, url } = await twoMasters(t, 60_000);
  const row = await a.insertBuild(newBuild);
  assert.ok(await a.claims.claim(row.id, 0, 'wa', 'now'));
  assert.equal(await b.claims.update(row.id, { attempt: 1 }, { state: 'finished', result: 'success' }), false, 'not the holder');
  assert.equal(await a.claims.update(row.id, { attempt: 2 }, { state: 'finished', result: 'success' }), false, 'not the attempt');
  assert.equal(await a.claims.update(row.id, { attempt: 1 }, { state: 'frozen' }), true);
  // a's lease runs out (a paused master): it may not write any more, nor renew.
  await dbs.sql(url, `UPDATE masters SET alive_until = now() - interval '1 second' WHERE id = $1`, [a.claims.holder]);
  await untilExpired(dbs, url, a.claims.holder);
  assert.equal(await a.claims.update(row.id, { attempt: 1 }, { state: 'finished', result: 'success' }), false, 'a lost its lease');
  // Nor release it (its worker's socket closed while it was cut off): the reaper has it.
  await a.claims.release([{ id: row.id, attempt: 1 }], 60_000);
  assert.deepEqual(await dbs.sql(url, 'SELECT holder, orphan_until FROM builds WHERE id = $1', [row.id]), [{ holder: a.claims.holder, orphan_until: null }], 'a released nothing');
  assert.equal(await a.claims.renew(60_000), false, 'a lease that ran out is not renewed');
  // b reaps it: back in the queue, attempt kept (the next claim makes it 2).
  assert.deepEqual(await b.claims.reap(3, 'now'), [{ id: row.id, attempt: 1, state: 'queued' }]);
  const after = (await b.getBuild(row.id))!;
  assert.equal(after.state, 'queued');
  assert.equal(after.result, null);
  assert.equal((await b.claims.claim(row.id, 1, 'wb', 'now'))?.attempt, 2);
});

test('claims: a released attempt is adopted only by the worker it was given to, and reaped once its window passed', { skip }, async (t) => {
  const { a, b, dbs, url } = await twoMasters(t);
  const row = await a.insertBuild(newBuild);
  await a.claims.claim(row.id, 0, 'w1', 'now');
  await a.claims.release([{ id: row.id, attempt: 1 }], 60_000);
  assert.deepEqual(await b.claims.reap(3, 'now'), [], 'still within its window');
  assert.equal(await b.claims.adopt(row.id, 1, 'w2'), null, 'another worker cannot take it');
  assert.equal(await b.claims.adopt(row.id, 2, 'w1'), null, 'nor another attempt');
  const adopted = await b.claims.adopt(row.id, 1, 'w1');
  assert.equal(adopted?.attempt, 1);
  assert.equal(await a.claims.update(row.id, { attempt: 1 }, { state: 'finished', result: 'failure' }), false, 'the old holder is fenced off');
  assert.equal(await b.claims.update(row.id, { attempt: 1 }, { state: 'finished', result: 'success' }), true);
  assert.equal((await a.getBuild(row.id))?.result, 'success');
  // Released and never adopted: reaped when the window is over.
  const two = await a.insertBuild(newBuild);
  await a.claims.claim(two.id, 0, 'w1', 'now');
  await a.claims.release([{ id: two.id, attempt: 1 }], 1);
  for (;;) {
    const [r] = await dbs.sql<{ over: boolean }>(url, 'SELECT orphan_until < now() AS over FROM builds WHERE id = $1', [two.id]);
    if (r?.over) break;
    await sleep(20);
  }
  assert.equal((await b.claims.reap(3, 'now')).length, 1);
  assert.equal((await a.getBuild(two.id))?.state, 'queued');
});

test('leases: a singleton is held by one master at a time and passes on only when it runs out', { skip }, async (t) => {
  const { a, b, dbs, url } = await twoMasters(t);
  assert.equal(await a.claims.lease('retention', 60_000), true);
  assert.equal(await b.claims.lease('retention', 60_000), false);
  assert.equal(await a.claims.lease('retention', 60_000), true, 'the holder renews');
  await dbs.sql(url, `UPDATE leases SET expires_at = now() - interval '1 second' WHERE name = 'retention'`);
  assert.equal(await b.claims.lease('retention', 60_000), true, 'taken over once it ran out');
  assert.equal(await a.claims.lease('retention', 60_000), false);
  await b.claims.unlease('retention');
  assert.equal(await a.claims.lease('retention', 60_000), true);
});

test('wake-ups: a NOTIFY from one master reaches the other\'s listener', { skip }, async (t) => {
  const { a, b } = await twoMasters(t);
  let woken = 0;
  let heard!: () => void;
  const got = new Promise<void>((ok) => { heard = ok; });
  const stop = await b.claims.onWake(() => { if (++woken === 2) heard(); });
  t.after(stop);
  await a.claims.wake();
  await got;
  assert.ok(woken >= 2, 'once on listening, once for the NOTIFY');
});

test('wake-ups: a master does not hear its own NOTIFY (its queue has the build already), and still hears the others\'', { skip }, async (t) => {
  const { a, b } = await twoMasters(t);
  const heard: string[] = [];
  let next!: () => void;
  const stop = await a.claims.onWake(() => { heard.push('wake'); next?.(); });
  t.after(stop);
  const initial = heard.length;
  // Its own wake-ups first, then one from b: only b's is heard, and it arrives after a's
  // own NOTIFYs (PostgreSQL delivers them in commit order on the listening connection).
  await a.claims.wake();
  await a.claims.wake();
  const got = new Promise<void>((ok) => { next = ok; });
  await b.claims.wake();
  await got;
  assert.equal(heard.length - initial, 1, 'only the other master\'s wake-up was heard');
});
