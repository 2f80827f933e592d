import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';
import { SqliteStore } from './sqlite-store.js';
import { storeSuite } from './store-suite.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-store-'));
  dirs.push(d);
  return d;
};

function withDb<T>(file: string, job: (db: Database.Database) => T): T {
  const db = new Database(file);
  try { return job(db); } finally { db.close(); }
}

storeSuite('SQLite', async () => {
  const file = join(dir(), 'db.sqlite');
  return {
    open: async () => new SqliteStore(file),
    schemaVersion: async () => withDb(file, (db) => (db.prepare('SELECT version FROM schema_version').get() as { version: number }).version),
    setSchemaVersion: async (v) => { withDb(file, (db) => db.prepare('UPDATE schema_version SET version = ?').run(v)); },
  };
});

test('SQLite: a database made by the released version-1 schema is migrated; its builds keep their place', async () => {
  const file = join(dir(), 'v1.sqlite');
  withDb(file, (db) => {
    db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL)');
    db.exec(MIGRATIONS[0]!.sqlite);
    db.prepare('INSERT INTO schema_version VALUES (1)').run();
    db.prepare(`INSERT INTO builds (builder, state, attempt, queued_at) VALUES ('hello', 'queued', 0, 't')`).run();
    db.prepare(`INSERT INTO tokens (name, hash, labels, created_at) VALUES ('old', 'h', '[]', 't')`).run();
  });
  const s = new SqliteStore(file);
  try {
    assert.deepEqual((await s.listUnfinishedBuilds()).map((b) => [b.id, b.builder, b.branch, b.trigger, b.supersededBy]), [[1, 'hello', null, 'force', null]]);
    assert.equal((await s.insertBuild({ builder: 'hello', revision: null, reason: null, queuedAt: 't' })).id, 2);
    // A token from before per-token build grants gets the default grant.
    assert.equal((await s.getToken('old'))?.maxBuilds, 4);
  } finally {
    await s.close();
  }
  // Later migrations were applied on top of it.
  assert.equal(withDb(file, (db) => (db.prepare('SELECT version FROM schema_version').get() as { version: number }).version), MIGRATIONS.length);
});

test('SQLite: a file that is not a database is refused with its path', () => {
  const junk = join(dir(), 'junk.sqlite');
  writeFileSync(junk, 'this is not a database, just text that is long enough to have a header '.repeat(20));
  assert.throws(() => new SqliteStore(junk), /cannot open the SQLite store .*junk\.sqlite/);
});

test('reads kept prepared by their shape answer each call with its own arguments: steps of 1, 2, 1 builds; filtered and unfiltered build lists', async () => {
  const store = new SqliteStore(join(dir(), 'db.sqlite'));
  try {
    const ids: number[] = [];
    for (const b of ['a', 'b', 'a']) ids.push((await store.insertBuild({ builder: b, revision: null, reason: 'r', queuedAt: new Date().toISOString() })).id);
    for (const id of ids) await store.putStep({ buildId: id, index: 0, name: `s${id}`, state: 'finished', result: 'success', exitCode: 0 });
    const names = async (bs: number[]) => (await store.listSteps(bs)).map((s) => s.name);
    assert.deepEqual(await names([ids[0]!]), [`s${ids[0]}`]);
    assert.deepEqual(await names([ids[1]!, ids[2]!]), [`s${ids[1]}`, `s${ids[2]}`]);
    assert.deepEqual(await names([ids[2]!]), [`s${ids[2]}`]);
    for (let i = 0; i < 70; i++) assert.deepEqual(await names([...Array.from({ length: i }, () => 999_999), ids[1]!]), [`s${ids[1]}`], 'more shapes than are kept');
    assert.deepEqual((await store.listBuilds({ builder: 'a', limit: 10 })).map((b) => b.id), [ids[2], ids[0]]);
    assert.deepEqual((await store.listBuilds({ builder: 'b', limit: 10 })).map((b) => b.id), [ids[1]]);
    assert.deepEqual((await store.listBuilds({ limit: 2 })).map((b) => b.id), [ids[2], ids[1]]);
  } finally {
    await store.close();
  }
});
