import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HistoryStore } from './history-store.js';

// The local history opens its database (and loads better-sqlite3) at the first read or write.

/** One build in the history: started, its log written (when given), finished; its entry's id. */
function record(h: HistoryStore, buildId: number, text?: string): number {
  const id = h.start({ buildId, attempt: 1, master: 'http://m', builder: 'b', revision: null });
  if (text !== undefined) h.appendLog(id, text);
  h.finish(id, 'success', null, 0);
  return id;
}

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

test('a build\'s local log is written off the event loop yet complete, in order, when finish returns; an entry appended to again after its end goes on where it ended', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const h = new HistoryStore(dir);
  t.after(() => h.close());
  const id = h.start({ buildId: 1, attempt: 1, master: 'http://m', builder: 'b', revision: null });
  let expected = '';
  for (let i = 0; i < 2000; i++) {
    const piece = `${i}:${'é'.repeat(i % 50)}\n`;
    expected += piece;
    h.appendLog(id, i % 2 ? piece : Buffer.from(piece));
  }
  // A piece larger than the queue's bound is written at once, in its place.
  const big = 'x'.repeat(9 * 1024 * 1024);
  h.appendLog(id, big);
  h.appendLog(id, 'after\n');
  expected += `${big}after\n`;
  h.finish(id, 'success', null, 0);
  assert.equal(readFileSync(h.logPath(id), 'utf8'), expected, 'complete as finish returns, no turn of the event loop later');
  h.appendLog(id, 'late\n');
  h.finish(id, 'success', null, 0);
  assert.equal(readFileSync(h.logPath(id), 'utf8'), `${expected}late\n`);
});

test('(Linux) a local log whose writes keep going while finish runs: the piece in flight is written again, at its place, and the file is whole after its callback too', { skip: process.platform !== 'linux' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const h = new HistoryStore(dir);
  t.after(() => h.close());
  const id = h.start({ buildId: 1, attempt: 1, master: 'http://m', builder: 'b', revision: null });
  const fds = () => readdirSync('/proc/self/fd').length;
  h.list(); // the database is open before counting descriptors
  const before = fds();
  const pieces = Array.from({ length: 50 }, (_, i) => Buffer.alloc(64 * 1024, 97 + (i % 26)));
  for (const p of pieces) h.appendLog(id, p);
  await new Promise((ok) => setImmediate(ok)); // some writes are done, one is likely in flight
  h.finish(id, 'success', null, 0);
  const whole = Buffer.concat(pieces);
  assert.ok(readFileSync(h.logPath(id)).equals(whole));
  // The descriptor is closed by the last write's callback: then nothing more can land.
  while (fds() > before) await new Promise((ok) => setImmediate(ok));
  assert.ok(readFileSync(h.logPath(id)).equals(whole));
});

test('the log file of a build that falls out of the history becomes the next build\'s (renamed and emptied), never another entry\'s text, and nothing else stays', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const h = new HistoryStore(dir, 2);
  const run = async (n: number, text: string): Promise<number> => {
    const id = record(h, n, text);
    // Its last write off the event loop lands: until then its file is never reused.
    await h.settled();
    return id;
  };
  const first = await run(1, 'the first build\'s long log, longer than the next\n');
  const firstIno = statSync(h.logPath(first)).ino;
  await run(2, 'second\n');
  // The third start prunes the first: its file is kept as the spare, then taken by the third's log.
  const third = await run(3, 'third\n');
  assert.equal(existsSync(h.logPath(first)), false);
  assert.equal(statSync(h.logPath(third)).ino, firstIno, 'the same file, renamed');
  assert.equal(readFileSync(h.logPath(third), 'utf8'), 'third\n', 'emptied first: none of the first build\'s text');
  // An entry appended to again after its end keeps its own file: the spare is not renamed over it.
  await run(4, 'fourth\n');
  h.appendLog(third, 'more\n');
  h.finish(third, 'success', null, 0);
  assert.equal(readFileSync(h.logPath(third), 'utf8'), 'third\nmore\n');
  // Build 2's file became build 4's: nothing but the kept entries' logs.
  assert.deepEqual(readdirSync(join(dir, 'history')).sort(), ['3.log', '4.log']);
  await h.settled();
  h.close();
  // A new store (the agent restarted) keeps and takes the spare in the same way.
  const h2 = new HistoryStore(dir, 2);
  const id5 = record(h2, 5, 'fifth\n');
  assert.equal(readFileSync(h2.logPath(id5), 'utf8'), 'fifth\n');
  assert.deepEqual(h2.list().map((e) => e.id), [id5, 4]);
  assert.deepEqual(readdirSync(join(dir, 'history')).sort(), ['4.log', '5.log']);
  // A build with no log leaves the spare behind (4's file); the next agent's first log takes it.
  const fourIno = statSync(h2.logPath(4)).ino;
  record(h2, 6);
  assert.deepEqual(readdirSync(join(dir, 'history')).sort(), ['.spare.log', '5.log']);
  await h2.settled();
  h2.close();
  const h3 = new HistoryStore(dir, 2);
  const id7 = record(h3, 7, 'seventh\n');
  assert.equal(statSync(h3.logPath(id7)).ino, fourIno);
  assert.equal(readFileSync(h3.logPath(id7), 'utf8'), 'seventh\n');
  assert.deepEqual(readdirSync(join(dir, 'history')).sort(), ['7.log']);
  h3.close();
});

test('a log whose last write is still in flight when its build falls out of the history is removed, not reused: that write cannot land in the next build\'s log', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const h = new HistoryStore(dir, 1);
  const first = h.start({ buildId: 1, attempt: 1, master: 'http://m', builder: 'b', revision: null });
  h.appendLog(first, 'one\n');
  // A second name holds the first file's inode, so a new file cannot be given its number.
  linkSync(h.logPath(first), join(dir, 'hold'));
  const firstIno = statSync(h.logPath(first)).ino;
  // Finished while its write off the event loop is in flight (nothing awaited in between).
  h.finish(first, 'success', null, 0);
  const second = record(h, 2, 'two\n');
  assert.equal(existsSync(h.logPath(first)), false);
  assert.notEqual(statSync(h.logPath(second)).ino, firstIno, 'a new file, not the first one renamed');
  assert.equal(readFileSync(h.logPath(second), 'utf8'), 'two\n');
  assert.deepEqual(readdirSync(join(dir, 'history')), ['2.log'], 'no spare kept from a file still written');
  h.close();
});
