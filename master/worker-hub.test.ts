import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { builder, memoryFarm } from '../test/helpers/in-memory-farm.js';
import type { Store } from './store/store.js';
import { FULL_TOKEN_SWEEP_EVERY, WorkerHub } from './worker-hub.js';
import { EventBus } from './events.js';

// The hub's token re-check, through the real hub and coordinator on a real SQLite store, with
// workers joined by in-memory sockets. The store is wrapped to count what the hub reads.

/** The farm's store, with a count of each token read the hub makes. */
function counting(store: Store): { store: Store; reads: { all: number; revoked: number; order: string } } {
  const reads = { all: 0, revoked: 0, order: '' };
  const proxy = new Proxy(store, {
    get(target, key, receiver) {
      if (key === 'listTokens') return () => { reads.all++; reads.order += 'A'; return target.listTokens(); };
      if (key === 'listRevokedTokenNames') return () => { reads.revoked++; reads.order += 'r'; return target.listRevokedTokenNames(); };
      const v = Reflect.get(target, key, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store: proxy, reads };
}

/** The hub's timers are unref'd (they never hold a master's process open): a test waiting on them holds the loop itself. */
function holdLoop(t: { after: (f: () => void) => void }): void {
  const alive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(alive));
}

/** The worker's link gives up for good (a 4401 close after the master's fatal error). */
function fatal(w: { link: { once(event: 'fatal', f: (e: Error) => void): unknown } }): Promise<Error> {
  return new Promise((ok) => { w.link.once('fatal', ok); });
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!await check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('token re-check: a revoked token\'s worker is closed by the check that reads only the revoked names; all rows are read once every FULL_TOKEN_SWEEP_EVERY checks', async (t) => {
  holdLoop(t);
  const farm = await memoryFarm([builder('b')]);
  t.after(() => farm.close());
  const { store, reads } = counting(farm.store);
  const hub = new WorkerHub(store, farm.coordinator, new EventBus(), { heartbeatMs: 60_000, tokenCheckMs: 2 });
  t.after(() => hub.close());
  const stays = await farm.worker('stays', { hubs: [hub] });
  const leaves = await farm.worker('leaves', { hubs: [hub] });
  // Past the first check (a full sweep), well into the revoked-names ones.
  await until('a few checks', () => reads.revoked >= 5);
  const fullBefore = reads.all;
  assert.equal(await farm.store.revokeToken('leaves', new Date().toISOString()), true);
  const error = await fatal(leaves);
  assert.match(error.message, /authentication failed: token revoked$/);
  assert.ok(reads.all - fullBefore <= 1, 'closed by a revoked-names check (at most one full sweep fell in between)');
  assert.ok(farm.coordinator.session('stays'), 'the other worker stays connected');
  assert.equal(farm.coordinator.session('leaves'), undefined);
  assert.equal(stays.link.connected, true);
  // Between two full reads, exactly FULL_TOKEN_SWEEP_EVERY - 1 checks of the revoked names.
  await until('three full sweeps', () => reads.all >= 3, 20_000);
  const between = reads.order.split('A').slice(1, -1);
  assert.ok(between.length >= 2);
  for (const run of between) assert.equal(run, 'r'.repeat(FULL_TOKEN_SWEEP_EVERY - 1));
});

test('token re-check: a token row deleted by hand (no revocation) closes its worker at the next full sweep', async (t) => {
  holdLoop(t);
  const farm = await memoryFarm([builder('b')]);
  t.after(() => farm.close());
  const { store, reads } = counting(farm.store);
  const hub = new WorkerHub(store, farm.coordinator, new EventBus(), { heartbeatMs: 60_000, tokenCheckMs: 2 });
  t.after(() => hub.close());
  const gone = await farm.worker('gone', { hubs: [hub] });
  await until('a check', () => reads.revoked >= 1);
  // Behind the store's back, as an admin with the sqlite3 shell would.
  const db = new Database(join(farm.dataDir, 'crowdbake.db'));
  db.prepare('DELETE FROM tokens WHERE name = ?').run('gone');
  db.close();
  const a0 = reads.all;
  const error = await fatal(gone);
  assert.match(error.message, /authentication failed: token revoked$/);
  assert.ok(reads.all > a0, 'it took a full sweep: the revoked names do not show a deleted row');
});
