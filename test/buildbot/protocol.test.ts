import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FreezeGate } from '../../worker/freeze-gate.js';
import { DEFAULT_NEWLINE_RE, LineSplitter, pythonRegex } from '../../worker/buildbot/lines.js';
import { pyGlob } from '../../worker/buildbot/pyglob.js';
import { repr, shellQuote } from '../../worker/buildbot/pyfmt.js';
import { buildEnv, resolveCommand } from '../../worker/buildbot/run-process.js';
import { startBuildbotWorker, type BuildbotWorker } from '../../worker/buildbot/worker.js';
import { FakeMaster, text, type FakeConnection } from './fake-master.js';
import { until } from '../helpers/wait.js';

// The protocol against a scripted master (fast, no BuildBot needed), and the pieces that must
// behave exactly like their Python originals.

const py = (code: string): string => execFileSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });

describe('msgpack_experimental_v7 against a scripted master', () => {
  let master: FakeMaster;
  let worker: BuildbotWorker;
  let conn: FakeConnection;
  let dir: string;
  const gate = new FreezeGate();
  const logs: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'crowdbake-bbproto-'));
    master = await FakeMaster.start((auth) => auth === `Basic ${Buffer.from('w1:pw:with:colons').toString('base64')}`);
    worker = await startBuildbotWorker({
      url: master.url, name: 'w1', password: 'pw:with:colons', basedir: dir, executor: 'host', freezeGate: gate,
      backoff: { initialMs: 50, maxMs: 200 }, log: (l) => logs.push(l),
    });
    conn = await master.connection();
  });
  after(async () => {
    await worker?.close();
    await master?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('print, keepalive, get_worker_info, settings, unknown ops', async () => {
    assert.deepEqual(await conn.request('print', { message: 'attached' }), { op: 'response', seq_number: 0, result: null });
    assert.equal((await conn.request('keepalive')).result, null);
    const info = (await conn.request('get_worker_info')).result as Record<string, unknown>;
    assert.equal(info.basedir, dir);
    assert.equal(info.system, 'posix');
    assert.equal((info.environ as Record<string, string>).PATH, process.env.PATH);
    for (const c of ['shell', 'uploadFile', 'upload_file', 'uploadDirectory', 'downloadFile', 'mkdir', 'rmdir', 'cpdir', 'stat', 'glob', 'listdir', 'rmfile']) {
      assert.equal((info.worker_commands as Record<string, string>)[c], '3.1', c);
    }
    assert.match((await conn.request('set_worker_settings', { args: { newline_re: 'x' } })).result as string, /obligatory settings/);
    assert.equal((await conn.request('set_worker_settings', { args: { newline_re: DEFAULT_NEWLINE_RE, max_line_length: 20, buffer_timeout: 5, buffer_size: 65536 } })).result, null);
    assert.deepEqual(await conn.request('bogus'), { op: 'response', seq_number: 5, result: 'Command bogus does not exist.', is_exception: true });
    assert.equal((await conn.request('start_command', { command_id: 'x', command_name: 'nope', args: {} })).result, "unrecognized WorkerCommand 'nope'");
    assert.equal((await conn.request('start_command', { command_id: 'y', command_name: 'shell', args: {} })).result, 'shell is missing args: workdir, command');
  });

  test('shell: whole lines (split at max_line_length), rc before complete, elapsed; listdir without a builder', async () => {
    const r = await conn.run('shell', { workdir: join(dir, 'b', 'build'), command: ['sh', '-c', 'printf "abc\\n0123456789012345678901234\\r\\nno newline"'], logEnviron: false, timeout: 10 }, '1');
    assert.equal(r.response.result, null);
    assert.equal(text(r.updates, 'stdout'), 'abc\n0123456789012345678\n901234\nno newline\n');
    const keys = r.updates.map(([k]) => k);
    assert.ok(keys.indexOf('rc') < keys.indexOf('elapsed'));
    assert.deepEqual(r.updates.find(([k]) => k === 'rc'), ['rc', 0]);
    assert.equal(r.complete.args, null);
    await conn.request('set_worker_settings', { args: { newline_re: DEFAULT_NEWLINE_RE, max_line_length: 4096, buffer_timeout: 5, buffer_size: 65536 } });
    const l = await conn.run('listdir', { path: dir }, '2', null);
    assert.deepEqual(l.updates.filter(([k]) => k === 'files' || k === 'rc'), [['files', ['b']], ['rc', 0]]);
  });

  test('interrupt_command: output so far, "command interrupted", killed by signal 9, rc -1, no elapsed', async () => {
    const done = conn.run('shell', { workdir: join(dir, 'b', 'build'), command: ['sh', '-c', 'echo started; exec sleep 30'], logEnviron: false, timeout: 60 }, '3');
    await conn.waitFor((m) => m.op === 'update' && m.command_id === '3' && JSON.stringify(m.args).includes('started'));
    assert.equal((await conn.request('interrupt_command', { builder_name: 'b', command_id: '3', why: 'test' })).result, null);
    const r = await done;
    assert.match(text(r.updates, 'header'), /\ncommand interrupted, attempting to kill\nprocess killed by signal 9\nelapsedTime=/);
    assert.deepEqual(r.updates.find(([k]) => k === 'rc'), ['rc', -1]);
    assert.equal(r.updates.some(([k]) => k === 'elapsed'), false);
    assert.equal((await conn.request('interrupt_command', { builder_name: 'b', command_id: 'gone', why: 'x' })).result, null);
  });

  test('a frozen worker stops its commands and their timers', async () => {
    const started = Date.now();
    const done = conn.run('shell', { workdir: join(dir, 'b', 'build'), command: ['sh', '-c', 'sleep 0.6; echo done'], logEnviron: false, timeout: 1 }, '4');
    await new Promise((ok) => setTimeout(ok, 200));
    await gate.freeze();
    await new Promise((ok) => setTimeout(ok, 1500));
    await gate.thaw();
    const r = await done;
    assert.equal(text(r.updates, 'stdout'), 'done\n', 'not timed out: frozen time does not count');
    assert.ok(Date.now() - started >= 1700);
  });

  test('download_file treats nil as end of file (what the 3.7 master sends); data when it sends some', async () => {
    const chunks = [Buffer.from('hello '), Buffer.from('world\n')];
    conn.answer = (m) => (m.op === 'update_read_file' ? chunks.shift() ?? null : null);
    const r = await conn.run('download_file', { path: join(dir, 'b', 'build', 'sub', 'f.txt'), workdir: 'build', blocksize: 16384, maxsize: null, mode: 0o600 }, '5');
    conn.answer = undefined;
    assert.deepEqual(r.updates.filter(([k]) => k === 'rc'), [['rc', 0]]);
    assert.equal(execFileSync('cat', [join(dir, 'b', 'build', 'sub', 'f.txt')], { encoding: 'utf8' }), 'hello world\n');
    assert.equal(execFileSync('stat', ['-c', '%a', join(dir, 'b', 'build', 'sub', 'f.txt')], { encoding: 'utf8' }).trim(), '600');
    assert.ok(conn.received.some((m) => m.op === 'update_read_file_close' && m.command_id === '5'));
  });

  test('upload_file in blocks, then close; maxsize truncates with rc 1', async () => {
    writeFileSync(join(dir, 'b', 'build', 'big.txt'), 'x'.repeat(2500));
    const r = await conn.run('upload_file', { path: join(dir, 'b', 'build', 'big.txt'), workdir: 'build', workersrc: 'big.txt', blocksize: 1000, maxsize: 2000, keepstamp: false }, '6');
    const writes = conn.received.filter((m) => m.op === 'update_upload_file_write' && m.command_id === '6').map((m) => (m.args as Uint8Array).length);
    assert.deepEqual(writes, [1000, 1000]);
    assert.ok(conn.received.some((m) => m.op === 'update_upload_file_close' && m.command_id === '6'));
    assert.deepEqual(r.updates.filter(([k]) => k === 'rc'), [['rc', 1]]);
    assert.match(text(r.updates, 'stderr'), /Maximum filesize reached/);
  });

  test('reconnects with backoff when the connection drops, and authenticates again', async () => {
    conn.ws.terminate();
    const again = await master.connection(2);
    assert.equal(again.auth, conn.auth);
    assert.equal((await again.request('print', { message: 'ping' })).result, null);
    conn = again;
  });

  test('shutdown: answers, then stops for good', async () => {
    assert.equal((await conn.request('shutdown')).result, null);
    assert.equal(await worker.done, 'shutdown');
    await new Promise((ok) => setTimeout(ok, 300));
    assert.equal(master.connections.length, 2, 'no reconnect after shutdown');
  });

  test('a wrong password is reported with HTTP 401 and retried', async () => {
    const w = await startBuildbotWorker({ url: master.url, name: 'w1', password: 'wrong', basedir: dir, executor: 'host', backoff: { initialMs: 20, maxMs: 50 }, log: (l) => logs.push(l) });
    const refusals = () => logs.filter((l) => /refused worker "w1": unknown name or wrong password \(HTTP 401\)/.test(l)).length;
    try {
      await until('the wrong password to be refused and tried again', () => refusals() >= 2);
    } finally {
      await w.close();
    }
    assert.ok(refusals() >= 2);
  });
});

describe('pieces that must match their Python originals', () => {
  test('line splitting: newline_re, \\r progress lines, long lines keep every character', () => {
    const s = new LineSplitter(10, pythonRegex(DEFAULT_NEWLINE_RE));
    assert.deepEqual(s.append('a\r\nb\rc', 1), ['a\nb\n', [1, 3], [1, 1]]);
    assert.equal(s.append('x'.repeat(25), 2)?.[0], `c${'x'.repeat(8)}\n${'x'.repeat(9)}\n`);
    assert.equal(s.flush()?.[0], `${'x'.repeat(8)}\n`);
    assert.equal(s.append('\x1b[2Jz\x08\x08y\n', 3)?.[0], '\nz\ny\n');
  });

  test('environment: lists, ${VAR}, null unsets, PYTHONPATH, bad values', () => {
    const env = buildEnv({ A: ['x', 'y'], B: '${HOME}-${NOPE}', GONE: null, PYTHONPATH: 'p' }, { HOME: '/h', GONE: '1', KEEP: 'k' });
    assert.deepEqual(env, { HOME: '/h', KEEP: 'k', A: 'x:y', B: '/h-', PYTHONPATH: 'p:' });
    assert.throws(() => buildEnv({ N: 3 }, {}), /'env' values must be strings or lists; key 'N' is incorrect/);
    assert.deepEqual(resolveCommand(['a', ['obfuscated', 'real', 'FAKE'], 3]), { real: ['a', 'real', '3'], fake: ['a', 'FAKE', '3'] });
  });

  test('repr() and shlex.quote() as Python prints them', () => {
    const values = ["it's", 'a"b', 'both\'"', 'tab\t\u001b\u00e9\u2028', ''];
    assert.equal(repr(values), py(`print(repr(${JSON.stringify(values)}))`).trim());
    assert.equal(repr({ a: { filename: 'f', follow: true }, n: null }), "{'a': {'filename': 'f', 'follow': True}, 'n': None}");
    const words = ['echo', "it's", 'a b', 'plain-_=:,./@%+', 'é'];
    assert.equal(shellQuote(words), py(`import shlex; print(' '.join(shlex.quote(w) for w in ${JSON.stringify(words)}))`).trim());
  });

  test('glob: the same matches, in the same order, as glob.glob(recursive=True)', async () => {
    const d = mkdtempSync(join(tmpdir(), 'crowdbake-bbglob-'));
    try {
      for (const f of ['a.txt', 'b.log', '.hidden.txt', 'sub/c.txt', 'sub/deeper/d.txt', 'sub/.h/e.txt', 'x[1].txt']) {
        mkdirSync(join(d, f, '..'), { recursive: true });
        writeFileSync(join(d, f), '');
      }
      symlinkSync(join(d, 'sub'), join(d, 'link'));
      for (const pattern of ['*.txt', '**/*.txt', '**', 'sub/*', '*/*.txt', '[ab].*', '[!a]*', 'x[[]1].txt', '?.log', '.*', 'nothing*', 'sub/deeper/d.txt']) {
        const full = join(d, pattern);
        const expected = JSON.parse(py(`import glob, json; print(json.dumps(glob.glob(${JSON.stringify(full)}, recursive=True)))`)) as string[];
        assert.deepEqual(await pyGlob(full), expected, pattern);
      }
      assert.ok(!(await pyGlob(join(d, '**', '*.txt'), false)).some((p) => p.includes('/link/deeper/')), 'confined: ** does not descend into symlinked directories');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
