import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildView } from '../protocol/api.js';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster } from './helpers/cluster.js';

const ECHO = `requires: { executor: host }\nsteps:\n  - run: echo "build $CROWDBAKE_BUILD_ID ran"\n`;

test('builds queued when the master stops are all still there after it restarts, and run in order', async (t) => {
  const dir = tempDir('restart');
  const workDir = tempDir('w');
  t.after(() => cleanup(dir, workDir));
  const first = await testMaster({ echo: ECHO }, { dir });
  const ids = [await first.force('echo'), await first.force('echo'), await first.force('echo')];
  const token = await first.token('w1');
  await first.close();

  const second = await testMaster({ echo: ECHO }, { dir });
  t.after(() => second.close());
  const queued = await second.get<BuildView[]>('/api/v1/builds?state=queued');
  assert.deepEqual(queued.map((b) => b.id).sort(), ids);

  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: second.url, token, dataDir: workDir, executor: 'host', labels: [], log: () => undefined });
  t.after(() => w.close());
  const done = [];
  for (const id of ids) done.push(await second.waitFinished(id, 20_000));
  assert.deepEqual(done.map((b) => b.result), ['success', 'success', 'success']);
  const log = await (await fetch(`${second.url}/api/v1/builds/${ids[1]}/log`)).text();
  assert.match(log, new RegExp(`^build ${ids[1]} ran$`, 'm'));
  const starts = done.map((b) => Date.parse(b.startedAt!));
  assert.ok(starts[0]! <= starts[1]! && starts[1]! <= starts[2]!, `started in order: ${starts}`);
});

test('a build running when the master stops is requeued at the next start', async (t) => {
  const dir = tempDir('restart');
  const workDir = tempDir('w');
  t.after(() => cleanup(dir, workDir));
  const first = await testMaster({ slow: `requires: { executor: host }\nsteps:\n  - run: sleep 30\n` }, { dir });
  const token = await first.token('w1');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: first.url, token, dataDir: workDir, executor: 'host', labels: [], log: () => undefined });
  const id = await first.force('slow');
  while ((await first.get<BuildView>(`/api/v1/builds/${id}`)).state !== 'running') await new Promise((r) => setTimeout(r, 20));
  await first.close();
  await w.close();

  const second = await testMaster({ slow: `requires: { executor: host }\nsteps:\n  - run: sleep 30\n` }, { dir });
  t.after(() => second.close());
  const b = await second.get<BuildView>(`/api/v1/builds/${id}`);
  assert.equal(b.state, 'queued');
  assert.equal(b.attempt, 1);
  assert.match(b.message ?? '', /master restarted/);
});
