import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// 20 MB of output in one step: the log on the master is complete and in order, and the
// master's memory does not grow with it (it is written through, not held).
test('a 20 MB log flood is stored whole while memory stays bounded', async (t) => {
  const m = await testMaster({
    loud: `requires: { executor: host }\nsteps:\n  - run: "i=0; while [ $i -lt 200 ]; do head -c 100000 /dev/zero | tr '\\\\0' x; echo \\" line $i\\"; i=$((i+1)); done"\n`,
  });
  const dir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
  const build = await m.waitFinished(await m.force('loud'), 120_000);
  clearInterval(sampler);
  assert.equal(build.result, 'success');
  const text = await (await fetch(`${m.url}/api/v1/builds/${build.id}/log`)).text();
  assert.ok(text.length > 20_000_000, `log is ${text.length} bytes`);
  const lines = text.split('\n').filter((l) => / line \d+$/.test(l)).map((l) => Number(/line (\d+)$/.exec(l)![1]));
  assert.deepEqual(lines, Array.from({ length: 200 }, (_, i) => i));
  // Master and worker share this process here; both together stay far below the log's size.
  assert.ok(peak - before < 150 * 1024 * 1024, `rss grew by ${((peak - before) / 1048576).toFixed(0)} MiB`);
  // Once the build has ended its log is kept compressed, and still reads the same.
  await until('the log to be compressed', () => existsSync(join(m.dataDir, 'logs', `${build.id}.log.gz`)) && !existsSync(join(m.dataDir, 'logs', `${build.id}.log`)));
  assert.ok(statSync(join(m.dataDir, 'logs', `${build.id}.log.gz`)).size < 1_000_000, 'compressed');
  assert.equal((await (await fetch(`${m.url}/api/v1/builds/${build.id}/log`)).text()).length, text.length);
});

test('log bytes: characters split across pipe reads and frames, stdout and stderr interleaved, arrive whole', async (t) => {
  // Three-byte characters in writes of 4,096 bytes: nearly every read ends inside a character.
  const m = await testMaster({
    utf8: `requires: { executor: host }\nsteps:\n  - run: "i=0; while [ $i -lt 150 ]; do printf '€%.0s' $(seq 1 2000); printf '✓%.0s' $(seq 1 2000) >&2; i=$((i+1)); done; echo"\n`,
  });
  const dir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const build = await m.waitFinished(await m.force('utf8'), 120_000);
  assert.equal(build.result, 'success');
  const text = await (await fetch(`${m.url}/api/v1/builds/${build.id}/log`)).text();
  assert.equal(text.includes('\uFFFD'), false, 'no character was cut');
  // Each character once more in the log's echo of the step's command.
  assert.equal(text.match(/€/g)?.length, 150 * 2000 + 1);
  assert.equal(text.match(/✓/g)?.length, 150 * 2000 + 1);
});

