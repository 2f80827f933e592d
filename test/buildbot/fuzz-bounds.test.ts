import assert from 'node:assert/strict';
import { decode, encode } from '@msgpack/msgpack';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startBuildbotWorker, type BuildbotWorker } from '../../worker/buildbot/worker.js';
import { FakeMaster, text, type FakeConnection, type Msg } from './fake-master.js';

// A malicious BuildBot master (scripted over msgpack) sends numeric fields at their bounds:
// 0, -1, 2^31, 2^53, NaN, ±Infinity, fractions, in blocksize, maxsize, mode, timeouts, the
// worker settings and the sequence numbers, and answers reads with more than was asked. The
// worker answers each with an error naming the argument (or handles it as the stock worker
// does), never crashes, keeps the connection, and never allocates a buffer sized by the
// master's number. The worker runs in this process, so every Buffer it allocates is counted.

const root = mkdtempSync(join(tmpdir(), 'crowdbake-bbbounds-'));
const basedir = join(root, 'basedir');
const build = join(basedir, 'b', 'build');
const BOUNDS = [0, -1, 2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 53, -(2 ** 53), Number.NaN, Infinity, -Infinity, 1.5, Number.MIN_VALUE];
/** The largest block the worker may ask for or send (transfer-commands.ts MAX_BLOCK). */
const MAX_BLOCK = 16 * 1024 * 1024;

// Counts the largest Buffer the process allocates (the worker's included).
let largest = 0;
const orig = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow };
const counting = <F extends (size: number, ...rest: never[]) => Buffer>(f: F): F => ((size: number, ...rest: never[]) => {
  if (size > largest) largest = size;
  return f.call(Buffer, size, ...rest);
}) as F;

type Run = Awaited<ReturnType<FakeConnection['run']>>;
const rcOf = (r: Run): unknown => r.updates.find(([k]) => k === 'rc')?.[1];
const all = (r: Run): string => JSON.stringify(r.updates) + JSON.stringify(r.complete.args ?? '') + JSON.stringify(r.response.result ?? '');
const failureOf = (r: Run): string => (r.response.is_exception ? String(r.response.result) : String(r.complete.args ?? ''));

describe('a malicious BuildBot master: numeric fields at their bounds', { timeout: 300_000 }, () => {
  let master: FakeMaster;
  let worker: BuildbotWorker;
  let conn: FakeConnection;
  let seq = 0;
  const id = (): string => `n${++seq}`;
  const logs: string[] = [];
  const reads: number[] = [];
  let bigAnswer = false;

  before(async () => {
    mkdirSync(build, { recursive: true });
    writeFileSync(join(build, 'up.txt'), 'x'.repeat(100_000));
    Buffer.alloc = counting(orig.alloc);
    Buffer.allocUnsafe = counting(orig.allocUnsafe);
    Buffer.allocUnsafeSlow = counting(orig.allocUnsafeSlow);
    master = await FakeMaster.start();
    worker = await startBuildbotWorker({ url: master.url, name: 'bounds', password: 'pw', basedir, executor: 'host', log: (l) => logs.push(l) });
    conn = await master.connection();
    conn.answer = (m) => {
      if (m.op !== 'update_read_file') return null;
      reads.push(m.length as number);
      // A master that sends more than was asked: 20 MiB, then end of file.
      if (bigAnswer) { bigAnswer = false; return orig.alloc.call(Buffer, 20 * 1024 * 1024, 0x61); }
      return null;
    };
  });
  after(async () => {
    Object.assign(Buffer, orig);
    await worker?.close();
    await master?.close();
    rmSync(root, { recursive: true, force: true });
  });

  const download = (more: Msg): Promise<Run> =>
    conn.run('download_file', { path: join(build, 'dl.txt'), workdir: 'build', blocksize: 1024, maxsize: null, mode: null, ...more }, id());
  const upload = (more: Msg): Promise<Run> =>
    conn.run('upload_file', { path: join(build, 'up.txt'), workdir: 'build', blocksize: 1024, maxsize: null, keepstamp: false, ...more }, id());

  test('blocksize: 0, negatives, NaN, ±Infinity, fractions refused by name; 2^31, 2^53 capped at 16 MiB per request', async () => {
    for (const blocksize of BOUNDS) {
      bigAnswer = true;
      reads.length = 0;
      const d = await download({ blocksize });
      assert.equal(d.response.result, null, `download blocksize=${blocksize}: the command was delivered`);
      const ok = Number.isInteger(blocksize) && blocksize >= 1;
      if (ok) {
        assert.equal(rcOf(d), 0, all(d));
        assert.ok(reads.length > 0 && reads.every((n) => n >= 1 && n <= MAX_BLOCK), `read lengths asked: ${reads.join(',')}`);
        // More than asked was answered: never more written than asked for.
        assert.ok(statSync(join(build, 'dl.txt')).size <= Math.min(blocksize, MAX_BLOCK), `written ${statSync(join(build, 'dl.txt')).size}`);
      } else {
        bigAnswer = false;
        assert.match(failureOf(d), /download_file: args\.blocksize must be a positive integer/, all(d));
        assert.equal(reads.length, 0, 'nothing was read for a refused download');
      }
      const writes: number[] = [];
      const before0 = conn.received.length;
      const u = await upload({ blocksize });
      for (const m of conn.received.slice(before0)) if (m.op === 'update_upload_file_write') writes.push((m.args as Uint8Array).length);
      if (ok) {
        assert.equal(rcOf(u), 0, all(u));
        assert.equal(writes.reduce((a, b) => a + b, 0), 100_000, 'the whole file was sent');
        assert.ok(writes.every((n) => n <= Math.min(blocksize, MAX_BLOCK)));
      } else {
        assert.match(failureOf(u), /upload_file: args\.blocksize must be a positive integer/, all(u));
        assert.equal(writes.length, 0);
      }
    }
  });

  test('maxsize: negatives and NaN refused by name; 0 truncates at once; 2^53 and Infinity are no limit', async () => {
    for (const maxsize of BOUNDS) {
      const d = await download({ maxsize });
      const u = await upload({ maxsize });
      if (Number.isNaN(maxsize) || maxsize < 0) {
        assert.match(failureOf(d), /download_file: args\.maxsize must be null or a non-negative number/, all(d));
        assert.match(failureOf(u), /upload_file: args\.maxsize must be null or a non-negative number/, all(u));
      } else if (maxsize < 1) {
        assert.equal(rcOf(d), 1, all(d));
        assert.match(text(d.updates, 'stderr') + JSON.stringify(d.updates), /Maximum filesize reached/);
        assert.equal(rcOf(u), 1, all(u));
      } else {
        assert.equal(rcOf(d), 0, all(d));
        assert.equal(rcOf(u), maxsize >= 100_000 ? 0 : 1, all(u));
      }
    }
  });

  test('mode: negatives, above 0o7777, NaN, fractions refused by name; nothing is chmod-ed with them', async () => {
    for (const mode of [...BOUNDS, 0o10000, 0o7777, 0o644]) {
      rmSync(join(build, 'dl.txt'), { force: true });
      const d = await download({ mode });
      if (Number.isInteger(mode) && mode >= 0 && mode <= 0o7777) {
        assert.equal(rcOf(d), 0, all(d));
        assert.equal(statSync(join(build, 'dl.txt')).mode & 0o777, mode & 0o777);
      } else {
        assert.match(failureOf(d), /download_file: args\.mode must be a file mode \(0 to 0o7777\)/, all(d));
      }
    }
    rmSync(join(build, 'dl.txt'), { force: true });
  });

  test('shell timeouts at their bounds: a huge timeout/maxTime does not kill the command at once; the worker lives on', async () => {
    for (const v of [2 ** 31, 2 ** 53, Infinity, Number.NaN, 0]) {
      for (const key of ['timeout', 'maxTime']) {
        const r = await conn.run('shell', { workdir: build, command: ['sh', '-c', 'sleep 0.2; echo done'], [key]: v }, id());
        assert.equal(r.response.result, null, `${key}=${v} delivered`);
        assert.equal(rcOf(r), 0, `${key}=${v}: ${all(r)}`);
        assert.match(text(r.updates, 'stdout'), /done/);
      }
    }
  });

  test('worker settings and sequence numbers at their bounds: answered, the connection stays, commands still run', async () => {
    for (const v of BOUNDS) {
      const r = await conn.request('set_worker_settings', { args: { buffer_size: v, buffer_timeout: v, newline_re: '(\\r\\n|\\r(?=.)|\\n)', max_line_length: v } });
      assert.equal(r.op, 'response');
    }
    assert.ok(logs.some((l) => /max_line_length NaN is not an integer >= 2/.test(l)), 'a refused setting is logged, named');
    // Requests the worker must answer with exactly the sequence number it was given.
    const answers: unknown[] = [];
    const got = new Promise<void>((ok) => {
      conn.ws.on('message', (data: Buffer) => {
        const m = decode(data) as Msg;
        if (m.op === 'response' && m.result === null && typeof m.seq_number === 'number' && Math.abs(m.seq_number) > 1e6) answers.push(m.seq_number);
        if (answers.length === 4) ok();
      });
    });
    for (const s of [2 ** 31, 2 ** 53, -(2 ** 53), 2 ** 64]) conn.ws.send(encode({ op: 'keepalive', seq_number: s }));
    // A response to a request the worker never made, with absurd numbers: ignored and logged.
    for (const s of [2 ** 53, -1, Number.NaN, Infinity]) conn.ws.send(encode({ op: 'response', seq_number: s, result: 'x' }));
    conn.ws.send(encode({ op: 'keepalive', seq_number: Number.NaN }));
    await got;
    assert.deepEqual(answers.sort(), [2 ** 31, 2 ** 53, -(2 ** 53), 2 ** 64].sort());
    assert.ok(logs.some((l) => /response to unknown request/.test(l)), logs.join('\n'));
    // max_line_length 2^53 or Infinity must not make a line the worker holds unbounded: output still arrives.
    const long = await conn.run('shell', { workdir: build, command: ['sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" x; echo; echo end'] }, id());
    assert.equal(rcOf(long), 0, all(long));
    assert.match(text(long.updates, 'stdout'), /^x{300000}\nend\n/m, 'max_line_length 2^53 was capped, not taken as 1.5 or Infinity');
    const i = await conn.request('interrupt_command', { command_id: 2 ** 53, why: 'x' });
    assert.equal(i.is_exception, undefined);
    assert.ok(worker && conn.ws.readyState === conn.ws.OPEN, 'the connection is still open');
  });

  test('no buffer sized by the master: the largest allocation stays within one 16 MiB block (+ the test\'s own 20 MiB answer)', () => {
    assert.ok(largest <= 21 * 1024 * 1024, `largest Buffer allocated: ${largest}`);
    const rss = process.memoryUsage().rss;
    assert.ok(rss < 1024 * 1024 * 1024, `rss ${rss}`);
    assert.ok(readFileSync(join(build, 'up.txt')).length === 100_000);
  });
});
