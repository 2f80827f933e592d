import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkerView } from '../protocol/api.js';
import { CLI, cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

// A `command` provisioner: the maintainer's own start/stop scripts. With no worker connected,
// queued work starts one through the script; it builds; after its idle time it is stopped.
test('queued work starts a latent worker through its start script; it is stopped when idle', async (t) => {
  const dir = tempDir('latent');
  const state = join(dir, 'state');
  const config = join(dir, 'config');
  const workerData = join(dir, 'worker-data');
  t.after(() => cleanup(dir));
  writeFileSync(join(dir, 'start.sh'), `#!/bin/sh
echo "starting $CROWDBAKE_WORKER_NAME for $CROWDBAKE_MASTER_URL"
nohup "${process.execPath}" "${CLI}" worker --master "$CROWDBAKE_MASTER_URL" --token "$CROWDBAKE_WORKER_TOKEN" \\
  --executor host --when always --idle-source none --labels latent --data "${workerData}" > "${state}.log" 2>&1 &
echo $! > "${state}.pid"
echo "$(date +%s%N) start" >> "${state}.events"
`);
  writeFileSync(join(dir, 'stop.sh'), `#!/bin/sh
kill "$(cat "${state}.pid")"
echo "$(date +%s%N) stop" >> "${state}.events"
`);
  const m = await testMaster({
    latent: `requires: { labels: [latent], executor: host }\nsteps:\n  - run: echo "built on a latent worker"\n`,
  }, { dir });
  await m.close();
  writeFileSync(join(config, 'crowdbake.yml'), `provisioners:
  - name: spare
    type: command
    start: sh ${join(dir, 'start.sh')}
    stop: sh ${join(dir, 'stop.sh')}
    labels: [latent]
    executors: [host]
    idleTimeout: 2s
    startTimeout: 60s
`);
  const m2 = await testMaster({}, { dir });
  t.after(() => m2.close());
  const id = await m2.force('latent');
  const build = await m2.waitFinished(id, 60_000);
  const log = await (await fetch(`${m2.url}/api/v1/builds/${id}/log`)).text();
  assert.equal(build.result, 'success', log + readFileSync(`${state}.log`, 'utf8'));
  assert.equal(build.worker, 'spare');
  assert.match(log, /built on a latent worker/);

  await until('the idle worker to be stopped', () => existsSync(`${state}.events`) && readFileSync(`${state}.events`, 'utf8').includes('stop'), 20_000);
  const events = readFileSync(`${state}.events`, 'utf8').trim().split('\n').map((l) => l.split(' ')[1]);
  assert.deepEqual(events, ['start', 'stop']);
  const pid = Number(readFileSync(`${state}.pid`, 'utf8'));
  await until('the worker process to exit', () => { try { process.kill(pid, 0); return false; } catch { return true; } });
  await until('the master to see it offline', async () => (await m2.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'spare')?.connected === false);
});

test('a broken provisioner config is refused with file, line and key', async () => {
  const dir = tempDir('latent-bad');
  try {
    const m = await testMaster({}, { dir });
    await m.close();
    writeFileSync(join(dir, 'config', 'crowdbake.yml'), `provisioners:\n  - name: spare\n    type: command\n    start: ./up.sh\n`);
    await assert.rejects(testMaster({}, { dir }), /crowdbake\.yml:2:5: provisioners\.0: missing required key "stop"/);
  } finally {
    cleanup(dir);
  }
});
