import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { BuildView } from '../protocol/api.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until, workerProcess } from './helpers/cluster.js';

const SLOW = `
requires: { executor: host }
steps:
  - name: work
    run: |
      echo "step started"
      sleep 2
      echo "step finished"
`;

test('a worker SIGKILLed mid-build: the build is requeued and finishes on another worker, no log lost', async (t) => {
  const m = await testMaster({ slow: SLOW });
  const dirA = tempDir('wa');
  const dirB = tempDir('wb');
  const a = workerProcess(m.url, await m.token('wa'), dirA, ['--executor', 'host']);
  let b: ReturnType<typeof workerProcess> | null = null;
  t.after(async () => { a.kill('SIGKILL'); b?.kill('SIGKILL'); await m.close(); cleanup(dirA, dirB); });

  const id = await m.force('slow');
  const log = () => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  await until('the build to start on wa', async () => (await log()).includes('step started'));
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).worker, 'wa');

  b = workerProcess(m.url, await m.token('wb'), dirB, ['--executor', 'host']);
  await until('wb to connect', async () => (await m.get<{ name: string; connected: boolean }[]>('/api/v1/workers')).some((w) => w.name === 'wb' && w.connected));
  a.kill('SIGKILL');

  const build = await m.waitFinished(id, 30_000);
  const text = await log();
  assert.equal(build.result, 'success', text);
  assert.equal(build.worker, 'wb');
  assert.equal(build.attempt, 2);
  assert.match(text, /attempt 1 on worker wa/);
  assert.match(text, /worker wa disconnected; build requeued \(attempt 1 of 3\)/);
  assert.match(text, /attempt 2 on worker wb/);
  // The first attempt's output stays in the log, in order, ahead of the second's.
  const first = text.indexOf('step started');
  const requeue = text.indexOf('build requeued');
  const second = text.indexOf('step started', requeue);
  assert.ok(first >= 0 && first < requeue && requeue < second, text);
  assert.ok(text.indexOf('step finished') > second, text);
});

test('a build whose workers keep vanishing gives up after maxAttempts with an error', async (t) => {
  const m = await testMaster({ slow: SLOW }, { maxAttempts: 2 });
  const dirs: string[] = [];
  t.after(async () => { await m.close(); cleanup(...dirs); });
  const id = await m.force('slow');
  for (const name of ['x1', 'x2']) {
    const dir = tempDir(name);
    dirs.push(dir);
    const w = workerProcess(m.url, await m.token(name), dir, ['--executor', 'host']);
    await until(`the build to run on ${name}`, async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).worker === name);
    w.kill('SIGKILL');
    await until(`${name} to be gone`, async () => {
      const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
      return b.state === 'finished' || b.worker !== name;
    });
  }
  const build = await m.waitFinished(id, 10_000);
  assert.equal(build.result, 'error');
  assert.match(build.message ?? '', /gave up after 2 attempts/);
});

test('a store that refuses to record an attempt: the build is not sent, waits queued, and runs once the store takes writes again', async (t) => {
  const m = await testMaster({ quick: 'requires: { executor: host }\nsteps:\n  - run: echo ran once\n' });
  const dir = tempDir('wr');
  const errors: string[] = [];
  const realError = console.error;
  console.error = (...args: unknown[]) => { errors.push(args.join(' ')); };
  // The real SQLite store, made to refuse through a trigger from a second connection.
  const db = new Database(join(m.dataDir, 'crowdbake.db'));
  db.exec(`CREATE TRIGGER refuse_running BEFORE UPDATE OF state ON builds WHEN NEW.state = 'running'
           BEGIN SELECT RAISE(ABORT, 'the test refuses running builds'); END`);
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { console.error = realError; db.close(); await w.close(); await m.close(); cleanup(dir); });

  const id = await m.force('quick');
  await until('the refusal to be reported', async () => errors.some((e) => e.includes(`build ${id}: cannot store attempt 1`)));
  const waiting = await m.get<BuildView>(`/api/v1/builds/${id}`);
  assert.deepEqual([waiting.state, waiting.attempt, waiting.worker], ['queued', 0, null]);
  assert.match(errors.find((e) => e.includes(`build ${id}:`))!, /not sent to w1; it waits in the queue: the test refuses running builds/);
  assert.equal(await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text(), '', 'no attempt header for an attempt that was never sent');

  db.exec('DROP TRIGGER refuse_running');
  const done = await m.waitFinished(id, 20_000);
  const log = await fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  assert.deepEqual([done.result, done.attempt, done.worker], ['success', 1, 'w1'], log);
  assert.equal(log.match(/^\*\*\* attempt \d+ on worker/gm)?.length, 1, log);
  assert.equal(log.match(/^ran once$/gm)?.length, 1, log);
});
