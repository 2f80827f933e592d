import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from '../worker/agent.js';
import { cleanup, tempDir, testMaster } from './helpers/cluster.js';

// Builds that break their limits fail with a message naming the limit; the worker (and this
// process, which hosts it) carries on and runs the next build.
test('memory hog, fork bomb, time and disk limits: each fails naming its limit, the worker survives', async (t) => {
  const m = await testMaster({
    hog: `requires: { executor: container }\nsteps:\n  - run: "dd if=/dev/zero of=/dev/null bs=200M count=1; echo survived"\nlimits: { memory: 64m }\n`,
    bomb: `requires: { executor: container }\nsteps:\n  - run: "bomb() { bomb | bomb & }; bomb; sleep 2; echo processes: $(ls /proc | grep -c '^[0-9]')"\nlimits: { pids: 64, time: 30s }\n`,
    slow: `requires: { executor: container }\nsteps:\n  - { run: "sleep 30", timeout: 1s }\n`,
    filler: `requires: { executor: container }\nsteps:\n  - run: "dd if=/dev/zero of=/work/fill bs=1M count=100; echo dd exit $?"\nlimits: { disk: 32m }\n`,
    fine: `requires: { executor: container }\nsteps:\n  - run: echo still working\n`,
  });
  const dir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always', memoryBytes: 512 * 1024 ** 2 }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'container', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const log = (id: number) => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());

  const hog = await m.waitFinished(await m.force('hog'), 60_000);
  assert.equal(hog.result, 'failure', await log(hog.id));
  assert.match(hog.message ?? '', /memory limit of 64 MiB/);

  const bomb = await m.waitFinished(await m.force('bomb'), 60_000);
  const bombLog = await log(bomb.id);
  const procs = Number(/processes: (\d+)/.exec(bombLog)?.[1] ?? 'NaN');
  // Either the bomb was contained and the step went on, or the build failed: never more than the cap.
  if (bomb.result === 'success') assert.ok(procs <= 64, `${procs} processes under a cap of 64`);
  assert.match(bombLog, /limits .*pids 64/);

  const slow = await m.waitFinished(await m.force('slow'), 60_000);
  assert.equal(slow.result, 'failure');
  assert.match(slow.message ?? '', /time limit of 1s/);

  const filler = await m.waitFinished(await m.force('filler'), 60_000);
  assert.equal(filler.result, 'failure', await log(filler.id));
  assert.match(filler.message ?? '', /the workdir is full at the disk limit of 32 MiB/);
  assert.match(await log(filler.id), /No space left on device/);

  const fine = await m.waitFinished(await m.force('fine'), 60_000);
  assert.equal(fine.result, 'success');
  assert.match(await log(fine.id), /^still working$/m);
});
