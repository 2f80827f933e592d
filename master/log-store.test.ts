import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { COMPRESS_MIN_BYTES, HEAD_BYTES, HEAD_ROWS, LogStore } from './log-store.js';

/** Equal texts, without printing megabytes when they are not. */
function same(actual: string | null, expected: string, what = 'the log'): void {
  if (actual === expected) return;
  const at = [...(actual ?? '')].findIndex((c, i) => c !== expected[i]);
  assert.fail(`${what}: ${actual === null ? 'none' : `${actual.length} characters`} where ${expected.length} were expected; first difference at ${at}: ${JSON.stringify(actual?.slice(at, at + 40))}`);
}

async function text(stream: Readable | null): Promise<string | null> {
  if (!stream) return null;
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(parts).toString('utf8');
}

function dataDir(t: { after: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-logs-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/**
 * A store whose database refuses `what` (e.g. 'DELETE ON chunks') as a full disk would, through
 * a trigger from a second connection (`other`; DROP TRIGGER refuse lets it through again).
 */
function refusing(t: { after: (f: () => void) => void }, what: string): { logs: LogStore; other: Database.Database } {
  const logs = new LogStore(dataDir(t), false);
  t.after(() => logs.closeAll());
  const other = new Database(join(logs.path(0), '..', 'logs.db'));
  t.after(() => other.close());
  other.exec(`CREATE TRIGGER refuse BEFORE ${what} BEGIN SELECT RAISE(ABORT, 'database or disk is full (the test)'); END`);
  return { logs, other };
}

const files = (d: string) => readdirSync(join(d, 'logs')).filter((f) => !f.startsWith('logs.db')).sort();

test('a short log is rows of the log database: no file is made for it, and it reads back whole, byte for byte (invalid UTF-8, NUL, text that looks like SQL)', async (t) => {
  const d = dataDir(t);
  const counted: number[] = [];
  const logs = new LogStore(d, true, (n) => counted.push(n));
  t.after(() => logs.closeAll());
  logs.append(1, '*** attempt 1 ***\n');
  logs.append(1, Buffer.from('héllo ', 'utf8'));
  logs.append(1, Buffer.from([0xff, 0x00, 0x0a]));
  logs.append(1, "'); DROP TABLE chunks; --\n");
  logs.finish(1);
  await logs.settled();
  assert.deepEqual(files(d), []);
  const parts: Buffer[] = [];
  for await (const c of logs.read(1)!) parts.push(Buffer.from(c as Uint8Array));
  assert.deepEqual(Buffer.concat(parts), Buffer.concat([Buffer.from('*** attempt 1 ***\nhéllo '), Buffer.from([0xff, 0x00, 0x0a]), Buffer.from("'); DROP TABLE chunks; --\n")]));
  assert.deepEqual(counted, [18, 7, 3, 26], 'each append counts the bytes it stored');
  assert.equal(logs.read(2), null, 'a build with no text has no log');
  assert.deepEqual(await logs.heldBuilds(), [1]);
});

test('past HEAD_BYTES a log goes on in its file; it reads in order after a restart, and appends after it keep going to the file', async (t) => {
  const d = dataDir(t);
  let logs = new LogStore(d, false);
  t.after(() => logs.closeAll());
  const line = (i: number) => `line ${i} ${'x'.repeat(90)}\n`;
  let expected = '';
  for (let i = 0; Buffer.byteLength(expected) < HEAD_BYTES + 10_000; i++) { logs.append(7, line(i)); expected += line(i); }
  assert.deepEqual(files(d), ['7.log']);
  same(await text(logs.read(7)), expected);
  // A requeue closes the file; the next attempt appends to it, not to the rows.
  logs.close(7);
  logs.append(7, 'attempt 2\n');
  expected += 'attempt 2\n';
  logs.closeAll();
  logs = new LogStore(d, false);
  logs.append(7, 'after the restart\n');
  expected += 'after the restart\n';
  same(await text(logs.read(7)), expected);
  // One chunk bigger than what is left of the head goes to the file whole.
  logs.append(8, 'a'.repeat(100));
  logs.append(8, 'b'.repeat(HEAD_BYTES));
  logs.append(8, 'c');
  same(await text(logs.read(8)), `${'a'.repeat(100)}${'b'.repeat(HEAD_BYTES)}c`);
  // After a restart, a short append to a log whose rows have room still goes after its file part.
  logs.closeAll();
  logs = new LogStore(d, false);
  logs.append(8, 'd');
  same(await text(logs.read(8)), `${'a'.repeat(100)}${'b'.repeat(HEAD_BYTES)}cd`);
});

test('a long log\'s file is compressed when its build ends and reads back after its rows', async (t) => {
  const d = dataDir(t);
  const logs = new LogStore(d, true);
  t.after(() => logs.closeAll());
  const head = 'h'.repeat(HEAD_BYTES);
  const tail = 't'.repeat(COMPRESS_MIN_BYTES + 1);
  logs.append(3, head);
  logs.append(3, tail);
  logs.finish(3);
  await logs.settled();
  assert.deepEqual(files(d), ['3.log.gz']);
  same(await text(logs.read(3)), head + tail);
  // A note after the end (a plain file again, as long as a log worth compressing) follows the
  // compressed part, and is not compressed over it.
  const note = `note ${'n'.repeat(COMPRESS_MIN_BYTES)}\n`;
  logs.append(3, note);
  logs.finish(3);
  await logs.settled();
  assert.deepEqual(files(d), ['3.log', '3.log.gz']);
  same(await text(logs.read(3)), `${head}${tail}${note}`);

  // A crash between the .gz's rename and the plain file's removal leaves the source beside it
  // (and one during the compression a .gz.tmp): the next start mends both, and the note of build 3 stays.
  logs.append(4, head);
  logs.append(4, tail);
  logs.finish(4);
  await logs.settled();
  logs.closeAll();
  writeFileSync(join(d, 'logs', '4.log'), tail);
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(d, 'logs', '4.log'), past, past);
  writeFileSync(join(d, 'logs', '3.log.gz.tmp'), 'half a gzip');
  const restarted = new LogStore(d, true);
  t.after(() => restarted.closeAll());
  same(await text(restarted.read(4)), head + tail);
  same(await text(restarted.read(3)), `${head}${tail}${note}`);
  assert.deepEqual(files(d), ['3.log', '3.log.gz', '4.log.gz']);
});

test('adversary: a worker sending its log a byte a frame gets at most HEAD_ROWS rows (commits); the rest goes to the file, in order', async (t) => {
  const d = dataDir(t);
  const logs = new LogStore(d, false);
  t.after(() => logs.closeAll());
  let expected = '';
  for (let i = 0; i < 10_000; i++) { const c = String.fromCharCode(97 + (i % 26)); logs.append(1, c); expected += c; }
  const db = new Database(join(d, 'logs', 'logs.db'), { readonly: true });
  t.after(() => db.close());
  assert.equal(db.prepare('SELECT count(*) FROM chunks WHERE build_id = 1').pluck().get(), HEAD_ROWS);
  assert.deepEqual(files(d), ['1.log']);
  same(await text(logs.read(1)), expected);
});

test('a note appended while the end\'s compression runs is kept, even when its file is closed again before that ends', async (t) => {
  const d = dataDir(t);
  const logs = new LogStore(d, true);
  t.after(() => logs.closeAll());
  const head = 'h'.repeat(HEAD_BYTES);
  const tail = 't'.repeat(COMPRESS_MIN_BYTES);
  logs.append(5, head);
  logs.append(5, tail);
  logs.finish(5);
  // Once the compressed copy is being written (its source read): then the note comes.
  const tmp = join(d, 'logs', '5.log.gz.tmp');
  const giveUp = Date.now() + 10_000;
  while (!(existsSync(tmp) && statSync(tmp).size > 0)) {
    assert.ok(!existsSync(join(d, 'logs', '5.log.gz')), 'the compression ended before its copy was seen being written');
    assert.ok(Date.now() < giveUp, 'no compressed copy was begun within 10 s of the end');
    await new Promise((ok) => setImmediate(ok));
  }
  logs.append(5, 'a note after the end\n');
  logs.close(5);
  await logs.settled();
  same(await text(logs.read(5)), `${head}${tail}a note after the end\n`);
});

test('take and release for the object store drop exactly the text taken: rows and file appended later stay', async (t) => {
  const d = dataDir(t);
  const logs = new LogStore(d, false);
  t.after(() => logs.closeAll());
  logs.append(4, 'one\n');
  logs.append(4, 'two\n');
  const source = (await logs.take(4))!;
  logs.append(4, 'three\n');
  same(await text(source.body()), 'one\ntwo\n');
  assert.equal(await source.release(), true);
  same(await text(logs.read(4)), 'three\n');
  assert.equal(await logs.take(5), null, 'nothing held, nothing to take');

  // With a file part: the file is moved aside, the rows read; a read meanwhile sees rows, snapshot, new text.
  logs.append(6, 'r'.repeat(HEAD_BYTES));
  logs.append(6, 'file part\n');
  const big = (await logs.take(6))!;
  logs.append(6, 'later\n');
  same(await text(logs.read(6)), `${'r'.repeat(HEAD_BYTES)}file part\nlater\n`);
  same(await text(big.body()), `${'r'.repeat(HEAD_BYTES)}file part\n`);
  await big.release();
  same(await text(logs.read(6)), 'later\n');
  assert.deepEqual(files(d), ['6.log']);
});

test('rows the object store has are not served or put again when the database refuses their delete; they go once it takes writes', async (t) => {
  const { logs, other } = refusing(t, 'DELETE ON chunks');
  logs.append(7, 'archived\n');
  const source = (await logs.take(7))!;
  same(await text(source.body()), 'archived\n');
  assert.equal(await source.release(), true);
  assert.equal(logs.hasRows(7), false, 'retention sees no rows left of it');
  logs.append(7, 'a note after\n');
  assert.equal(logs.hasRows(7), true);
  same(await text(logs.read(7)), 'a note after\n');
  same(await text((await logs.take(7))!.body()), 'a note after\n', 'the next put');
  other.exec('DROP TRIGGER refuse');
  logs.finish(8);
  assert.equal(other.prepare("SELECT count(*) FROM chunks WHERE build_id = 7 AND data = CAST('archived\n' AS BLOB)").pluck().get(), 0);
});

test('retention removes the rows and files of builds that ended before the cutoff, not of one still running', async (t) => {
  const d = dataDir(t);
  const logs = new LogStore(d, false);
  t.after(() => logs.closeAll());
  const day = 86_400_000;
  const now = Date.now();
  logs.append(1, 'old and short\n');
  logs.finish(1, now - 10 * day);
  logs.append(2, 'x'.repeat(HEAD_BYTES));
  logs.append(2, 'old, with a file\n');
  logs.finish(2, now - 10 * day);
  logs.append(3, 'recent\n');
  logs.finish(3, now - 1000);
  logs.append(4, 'still running\n');
  assert.equal(logs.removeEndedBefore(now - day), 2);
  assert.equal(logs.read(1), null);
  assert.equal(logs.read(2), null);
  assert.equal(existsSync(join(d, 'logs', '2.log')), false);
  same(await text(logs.read(3)), 'recent\n');
  same(await text(logs.read(4)), 'still running\n');
  assert.equal(logs.removeEndedBefore(now - day), 0, 'nothing twice');
});

test('a log database that is not one is an error at start that names the file; the files are left as they are', (t) => {
  const d = dataDir(t);
  new LogStore(d).closeAll();
  const file = join(d, 'logs', 'logs.db');
  for (const f of readdirSync(join(d, 'logs'))) rmSync(join(d, 'logs', f));
  writeFileSync(file, 'this is not a database, it is a text file of more than one hundred bytes so that SQLite reads its header and refuses it.\n');
  writeFileSync(join(d, 'logs', '9.log'), 'kept\n');
  assert.throws(() => new LogStore(d), (e: Error) => e.message.includes(`cannot open the log database ${file}`) && /not a database/.test(e.message));
  assert.deepEqual(files(d), ['9.log']);
});

test('an end the database refuses to note (a full disk) does not stop the build from ending; it is noted at the next end, and retention then finds it', async (t) => {
  const { logs, other } = refusing(t, 'INSERT ON ended');
  const day = 86_400_000;
  logs.append(1, 'ended while the disk was full\n');
  logs.finish(1, Date.now() - 10 * day);
  assert.equal(logs.removeEndedBefore(Date.now() - day), 0, 'not noted yet');
  other.exec('DROP TRIGGER refuse');
  logs.append(2, 'the next build\n');
  logs.finish(2);
  assert.equal(logs.removeEndedBefore(Date.now() - day), 1);
  assert.equal(logs.read(1), null);
  same(await text(logs.read(2)), 'the next build\n');
});
