import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';
import { SqliteStore } from './sqlite-store.js';

const dir = () => mkdtempSync(join(tmpdir(), 'crowdbake-store-'));

test('builds, steps and artifacts round-trip and survive reopening', async () => {
  const d = dir();
  try {
    const file = join(d, 'db.sqlite');
    let s = new SqliteStore(file);
    const a = await s.insertBuild({ builder: 'hello', revision: 'abc', reason: 'test', queuedAt: '2026-01-01T00:00:00.000Z' });
    const b = await s.insertBuild({ builder: 'other', revision: null, reason: null, queuedAt: '2026-01-01T00:00:01.000Z' });
    assert.deepEqual([a.id, a.state, a.attempt, a.result], [1, 'queued', 0, null]);
    await s.updateBuild(a.id, { state: 'running', worker: 'w1', attempt: 1, startedAt: '2026-01-01T00:00:02.000Z' });
    await s.putStep({ buildId: a.id, index: 0, name: 'build', state: 'finished', result: 'success', exitCode: 0 });
    await s.putStep({ buildId: a.id, index: 1, name: 'test', state: 'running', result: null, exitCode: null });
    await s.putStep({ buildId: a.id, index: 1, name: 'test', state: 'finished', result: 'failure', exitCode: 2 });
    await s.putArtifact({ buildId: a.id, name: 'x.tar', size: 3, sha256: 'f'.repeat(64), worker: 'w1' });
    await s.close();

    s = new SqliteStore(file);
    const got = await s.getBuild(a.id);
    assert.equal(got?.state, 'running');
    assert.equal(got?.worker, 'w1');
    assert.deepEqual((await s.listSteps([a.id])).map((x) => [x.index, x.result, x.exitCode]), [[0, 'success', 0], [1, 'failure', 2]]);
    assert.deepEqual(await s.listArtifacts(a.id), [{ buildId: a.id, name: 'x.tar', size: 3, sha256: 'f'.repeat(64), worker: 'w1' }]);
    assert.deepEqual((await s.listUnfinishedBuilds()).map((x) => x.id), [a.id, b.id]);
    assert.deepEqual((await s.listBuilds({ limit: 10 })).map((x) => x.id), [b.id, a.id]);
    assert.deepEqual((await s.listBuilds({ limit: 10, builder: 'hello' })).map((x) => x.id), [a.id]);
    assert.deepEqual((await s.listBuilds({ limit: 10, state: 'queued' })).map((x) => x.id), [b.id]);
    assert.deepEqual((await s.listBuilds({ limit: 10, beforeId: b.id })).map((x) => x.id), [a.id]);
    await s.clearSteps(a.id);
    assert.deepEqual(await s.listSteps([a.id]), []);
    await s.close();
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('tokens: unique names, revocation, stored as given', async () => {
  const s = new SqliteStore(':memory:');
  await s.createToken({ name: 'w1', hash: 'h', labels: ['a'], createdAt: 'now', revokedAt: null });
  await assert.rejects(s.createToken({ name: 'w1', hash: 'h2', labels: [], createdAt: 'now', revokedAt: null }), /a token named "w1" already exists/);
  assert.equal(await s.revokeToken('w1', 'later'), true);
  assert.equal(await s.revokeToken('w1', 'again'), false);
  assert.equal((await s.getToken('w1'))?.revokedAt, 'later');
  assert.equal(await s.getToken('nobody'), null);
  await s.close();
});

test('a store from a newer Crowdbake is refused with a clear message; a garbage file too', () => {
  const d = dir();
  try {
    const file = join(d, 'db.sqlite');
    const db = new Database(file);
    db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL)');
    db.prepare('INSERT INTO schema_version VALUES (?)').run(MIGRATIONS.length + 5);
    db.close();
    assert.throws(() => new SqliteStore(file), /newer than this Crowdbake/);
    const junk = join(d, 'junk.sqlite');
    writeFileSync(junk, 'this is not a database, just text that is long enough to have a header '.repeat(20));
    assert.throws(() => new SqliteStore(junk), /cannot open the SQLite store .*junk\.sqlite/);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
