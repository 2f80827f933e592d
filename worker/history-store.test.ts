import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HistoryStore } from './history-store.js';

// The local history opens its database (and loads better-sqlite3) at the first read or write.

test('the local history opens its database at the first use: a new store makes no history.db, still records a build and its log, and lists it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const h = new HistoryStore(dir);
  assert.equal(existsSync(join(dir, 'history.db')), false, 'not opened at construction');
  h.close(); // closing a store never opened is fine
  const h2 = new HistoryStore(dir);
  const id = h2.start({ buildId: 7, attempt: 1, master: 'http://m', builder: 'b', revision: 'abc', spec: { builder: 'b' } });
  assert.equal(existsSync(join(dir, 'history.db')), true);
  h2.appendLog(id, 'hello\n');
  h2.finish(id, 'success', null, 0, 12);
  const [e] = h2.list();
  assert.equal(e?.id, id);
  assert.equal(e?.result, 'success');
  assert.equal(e?.cpuMs, 12);
  assert.deepEqual(h2.spec(id), { builder: 'b' });
  assert.equal(readFileSync(h2.logPath(id), 'utf8'), 'hello\n');
  h2.close();
  // Read first (the control server's history page) on a store with entries: opened then too.
  const h3 = new HistoryStore(dir);
  assert.equal(h3.get(id)?.builder, 'b');
  h3.close();
});

test('a build an earlier agent left running is marked when the history is first opened, before this agent records its own', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const before = new HistoryStore(dir);
  const left = before.start({ buildId: 1, attempt: 1, master: 'http://m', builder: 'b', revision: null });
  before.close(); // the agent stopped while build 1 ran
  const h = new HistoryStore(dir);
  const mine = h.start({ buildId: 2, attempt: 1, master: 'http://m', builder: 'b', revision: null });
  assert.equal(h.get(left)?.result, 'error');
  assert.equal(h.get(left)?.message, 'the agent stopped while it ran');
  assert.equal(h.get(mine)?.finishedAt, null, "this agent's running build is not marked");
  h.close();
});

test('a history that cannot be opened fails the call that uses it, naming the file, not the construction', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  spawnSync('mkdir', [join(dir, 'history.db')]); // a directory where the database file should be
  const h = new HistoryStore(dir);
  assert.throws(() => h.list(), /cannot open the local history .*history\.db/);
  h.close();
});

test('importing the history store does not load better-sqlite3', () => {
  const url = new URL('./history-store.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e',
    `import { createRequire } from 'node:module'; await import(${JSON.stringify(url)}); const req = createRequire(${JSON.stringify(url)}); ` +
    `console.log(Object.keys(req.cache).some((k) => k.includes('better-sqlite3')))`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'false');
});
