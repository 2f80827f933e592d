import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqlite, WAL_SIZE_LIMIT } from './sqlite-open.js';

test('openSqlite: WAL, synchronous NORMAL, a 5 s busy timeout and the WAL file cut back to 64 MiB, on the connection it gives', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-sqlite-open-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = openSqlite(join(dir, 'x.db'), 'the test database');
  try {
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('synchronous', { simple: true }), 1); // NORMAL
    assert.equal(db.pragma('busy_timeout', { simple: true }), 5000);
    assert.equal(db.pragma('journal_size_limit', { simple: true }), WAL_SIZE_LIMIT);
    assert.equal(WAL_SIZE_LIMIT, 67108864);
  } finally {
    db.close();
  }
});

test('openSqlite: a path that cannot be a database (no such directory, a directory, a file of junk) gets an error naming what it is for, the path and the cause, with SQLite\'s code', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-sqlite-open-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.throws(() => openSqlite(join(dir, 'no-such-dir', 'x.db'), 'the log database'),
    (e: Error) => e.message.startsWith(`cannot open the log database ${join(dir, 'no-such-dir', 'x.db')}: `) && e.message.length > 40);
  assert.throws(() => openSqlite(dir, 'the SQLite store'), /^Error: cannot open the SQLite store .*: /);
  // A file that opens but is not a database: refused at its first statement, with SQLite's code kept (callers read it, e.g. SQLITE_FULL).
  const junk = join(dir, 'junk.db');
  writeFileSync(junk, 'this is not an SQLite database, but it is long enough to have a header page of its own'.repeat(20));
  assert.throws(() => openSqlite(junk, 'the log database'),
    (e: Error & { code?: string }) => e.message.startsWith(`cannot open the log database ${junk}: `) && e.code === 'SQLITE_NOTADB');
});
