import { test } from 'node:test';
import assert from 'node:assert/strict';
import { text } from 'node:stream/consumers';
import { PostgresLogs } from './postgres-logs.js';
import { PostgresStore } from './postgres-store.js';
import { NO_TEST_POSTGRES, TEST_POSTGRES_ENV, TestDatabases } from './postgres-test-db.js';

// Build logs in the farm's PostgreSQL (postgres-logs.ts), two stores standing for two masters
// on one real database.
const server = process.env[TEST_POSTGRES_ENV];
const skip = server ? false : NO_TEST_POSTGRES;
const newBuild = { builder: 'b', revision: null, reason: null, queuedAt: new Date().toISOString() };

async function farm(t: { after: (f: () => Promise<void>) => void }) {
  const dbs = new TestDatabases(server!);
  const url = await dbs.create();
  const a = await PostgresStore.open(url);
  const b = await PostgresStore.open(url);
  await a.claims.join('http://a', 60_000);
  await b.claims.join('http://b', 60_000);
  const acks: { a: unknown[]; b: unknown[] } = { a: [], b: [] };
  const warnings: string[] = [];
  const logsA = new PostgresLogs(url, () => a.claims.holder, (s) => acks.a.push(...s), (m) => warnings.push(m));
  const logsB = new PostgresLogs(url, () => b.claims.holder, (s) => acks.b.push(...s), (m) => warnings.push(m));
  t.after(async () => { await logsA.end(); await logsB.end(); await a.close(); await b.close(); await dbs.dropAll(); });
  return { a, b, logsA, logsB, acks, warnings, dbs, url };
}

test('shared logs: a worker\'s text is stored only by the master holding its attempt; notes always; acknowledgements name what was stored', { skip }, async (t) => {
  const { a, b, logsA, logsB, acks } = await farm(t);
  const row = await a.insertBuild(newBuild);
  assert.ok(await a.claims.claim(row.id, 0, 'wa', 'now'));
  logsA.append(row.id, '*** header ***\n');
  logsA.append(row.id, 'one\n', { attempt: 1, from: 0, length: 4 });
  // Master b does not hold the attempt (a stale master after a fail-over looks the same): fenced off.
  logsB.append(row.id, 'forged\n', { attempt: 1, from: 4, length: 7 });
  // Nor does attempt 2, which does not exist.
  logsA.append(row.id, 'future\n', { attempt: 2, from: 0, length: 7 });
  await logsA.flush();
  await logsB.flush();
  logsA.append(row.id, 'two\n', { attempt: 1, from: 4, length: 4 });
  await logsA.flush();
  assert.equal(await text(logsA.read(row.id)), '*** header ***\none\ntwo\n');
  assert.equal(await text(logsB.read(row.id)), '*** header ***\none\ntwo\n', 'any master serves it');
  assert.deepEqual(acks.a, [{ buildId: row.id, attempt: 1, offset: 4 }, { buildId: row.id, attempt: 1, offset: 8 }]);
  assert.deepEqual(acks.b, [], 'nothing fenced off is acknowledged');
  assert.equal(await logsB.storedOffset(row.id, 1), 8);
  assert.equal(await logsB.storedOffset(row.id, 2), 0);

  // The worker reconnects to b, which adopts the attempt: now b writes and a is fenced off.
  await a.claims.release([{ id: row.id, attempt: 1 }], 60_000);
  assert.ok(await b.claims.adopt(row.id, 1, 'wa'));
  logsA.append(row.id, 'late from a\n', { attempt: 1, from: 8, length: 12 });
  await logsA.flush();
  logsB.append(row.id, 'three\n', { attempt: 1, from: 8, length: 6 });
  await logsB.flush();
  assert.equal(await text(logsA.read(row.id)), '*** header ***\none\ntwo\nthree\n');
  assert.deepEqual(acks.b, [{ buildId: row.id, attempt: 1, offset: 14 }]);
});

test('shared logs: bytes are kept as they came (NUL, invalid UTF-8), in order across many batches; a lost connection loses nothing', { skip }, async (t) => {
  const { a, logsA, warnings, dbs, url } = await farm(t);
  const row = await a.insertBuild(newBuild);
  assert.ok(await a.claims.claim(row.id, 0, 'wa', 'now'));
  const parts: Buffer[] = [];
  for (let i = 0; i < 1200; i++) {
    const part = Buffer.from(`${i}\u0000\n`);
    parts.push(part);
    logsA.append(row.id, part);
    if (i % 400 === 0) await logsA.flush();
  }
  parts.push(Buffer.from([0xff, 0xfe, 0x0a]));
  logsA.append(row.id, Buffer.from([0xff, 0xfe, 0x0a]));
  await logsA.flush();
  const chunks: Buffer[] = [];
  for await (const c of logsA.read(row.id)) chunks.push(c as Buffer);
  const got = Buffer.concat(chunks);
  assert.ok(got.equals(Buffer.concat(parts)), 'every byte, in order (read in batches of 500 rows)');

  // The server drops the logs' connection: what is appended meanwhile is written after it is back.
  // Only this test's database: test files run side by side on one server, and another file's
  // master may be running a statement that names log_chunks (its migrations) at this moment.
  const dropped = await dbs.sql<{ n: number }>(url, "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'crowdbake' AND pid <> pg_backend_pid() AND query LIKE '%log_chunks%'");
  assert.ok(dropped[0]!.n >= 1, 'the logs\' connection was dropped');
  await new Promise((ok) => setTimeout(ok, 100));
  logsA.append(row.id, 'after the drop\n');
  await logsA.flush();
  for (let i = 0; i < 50 && !(await text(logsA.read(row.id))).endsWith('after the drop\n'); i++) await new Promise((ok) => setTimeout(ok, 100));
  assert.ok((await text(logsA.read(row.id))).endsWith('after the drop\n'), `stored after the reconnect (warnings: ${warnings.join('; ')})`);
});

test('shared logs: retention removes the rows of builds that finished before the cutoff, and only those', { skip }, async (t) => {
  const { a, logsA } = await farm(t);
  const old = await a.insertBuild(newBuild);
  const recent = await a.insertBuild(newBuild);
  const running = await a.insertBuild(newBuild);
  for (const r of [old, recent, running]) {
    assert.ok(await a.claims.claim(r.id, 0, 'wa', 'now'));
    logsA.append(r.id, `log of ${r.id}\n`, { attempt: 1, from: 0, length: `log of ${r.id}\n`.length });
  }
  await logsA.flush();
  assert.ok(await a.claims.update(old.id, { attempt: 1 }, { state: 'finished', result: 'success', finishedAt: '2020-01-01T00:00:00.000Z' }));
  assert.ok(await a.claims.update(recent.id, { attempt: 1 }, { state: 'finished', result: 'success', finishedAt: new Date().toISOString() }));
  assert.equal(await logsA.removeFinishedBefore(new Date(Date.now() - 86_400_000).toISOString()), 1);
  assert.equal(await text(logsA.read(old.id)), '');
  assert.equal(await text(logsA.read(recent.id)), `log of ${recent.id}\n`);
  assert.equal(await text(logsA.read(running.id)), `log of ${running.id}\n`);
});

test('shared logs: a master whose lease ran out stores nothing it buffered — notes nor worker text — even once it joined again under a new id', { skip }, async (t) => {
  const { a, logsA, acks, dbs, url } = await farm(t);
  const row = await a.insertBuild(newBuild);
  assert.ok(await a.claims.claim(row.id, 0, 'wa', 'now'));
  logsA.append(row.id, '*** header ***\n');
  logsA.append(row.id, 'one\n', { attempt: 1, from: 0, length: 4 });
  await logsA.flush();
  // Cut off: a's lease runs out, and what comes meanwhile cannot get through until later.
  const old = a.claims.holder;
  await dbs.sql(url, `UPDATE masters SET alive_until = now() - interval '1 second' WHERE id = $1`, [old]);
  logsA.append(row.id, '*** worker wa disconnected ***\n');
  logsA.append(row.id, 'two\n', { attempt: 1, from: 4, length: 4 });
  // Healed: a steps down and joins again; then the buffer gets through.
  await a.claims.join('http://a', 60_000);
  assert.notEqual(a.claims.holder, old);
  logsA.append(row.id, '*** a note of the new id ***\n');
  await logsA.flush();
  assert.equal(await text(logsA.read(row.id)), '*** header ***\none\n*** a note of the new id ***\n', 'nothing of the old id after its lease ran out');
  assert.deepEqual(acks.a, [{ buildId: row.id, attempt: 1, offset: 4 }]);
});
