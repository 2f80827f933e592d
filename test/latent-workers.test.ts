import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkerView } from '../protocol/api.js';
import { CLI, cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

/** The maintainer's scripts of a `command` provisioner; `events` holds one line per start (its first argument, else "start") and stop. */
function provisionerScripts(dir: string): { state: string; events: () => string[]; pid: () => number } {
  const state = join(dir, 'state');
  const workerData = join(dir, 'worker-data');
  writeFileSync(join(dir, 'start.sh'), `#!/bin/sh
echo "starting $CROWDBAKE_WORKER_NAME for $CROWDBAKE_MASTER_URL"
nohup "${process.execPath}" "${CLI}" worker --master "$CROWDBAKE_MASTER_URL" --token "$CROWDBAKE_WORKER_TOKEN" \\
  --executor host --when always --idle-source none --labels latent --data "${workerData}" > "${state}.log" 2>&1 &
echo $! > "${state}.pid"
echo "$(date +%s%N) \${1:-start}" >> "${state}.events"
`);
  writeFileSync(join(dir, 'stop.sh'), `#!/bin/sh
kill "$(cat "${state}.pid")"
echo "$(date +%s%N) stop" >> "${state}.events"
`);
  return {
    state,
    events: () => (existsSync(`${state}.events`) ? readFileSync(`${state}.events`, 'utf8').trim().split('\n').map((l) => l.split(' ')[1]!) : []),
    pid: () => Number(readFileSync(`${state}.pid`, 'utf8')),
  };
}

function provisionerConfig(dir: string, idleTimeout: string): string {
  return `provisioners:
  - name: spare
    type: command
    start: sh ${join(dir, 'start.sh')}
    stop: sh ${join(dir, 'stop.sh')}
    labels: [latent]
    executors: [host]
    idleTimeout: ${idleTimeout}
    startTimeout: 60s
`;
}

async function gone(pid: number): Promise<void> {
  await until('the worker process to exit', () => { try { process.kill(pid, 0); return false; } catch { return true; } });
}

// A `command` provisioner: the maintainer's own start/stop scripts. With no worker connected,
// queued work starts one through the script; it builds; after its idle time it is stopped.
test('queued work starts a latent worker through its start script; it is stopped when idle', async (t) => {
  const dir = tempDir('latent');
  const config = join(dir, 'config');
  t.after(() => cleanup(dir));
  const { state, events, pid } = provisionerScripts(dir);
  const m = await testMaster({
    latent: `requires: { labels: [latent], executor: host }\nsteps:\n  - run: echo "built on a latent worker"\n`,
  }, { dir });
  await m.close();
  writeFileSync(join(config, 'crowdbake.yml'), provisionerConfig(dir, '2s'));
  const m2 = await testMaster({}, { dir });
  t.after(() => m2.close());
  const id = await m2.force('latent');
  const build = await m2.waitFinished(id, 60_000);
  const log = await (await fetch(`${m2.url}/api/v1/builds/${id}/log`)).text();
  assert.equal(build.result, 'success', log + readFileSync(`${state}.log`, 'utf8'));
  assert.equal(build.worker, 'spare');
  assert.match(log, /built on a latent worker/);

  await until('the idle worker to be stopped', () => events().includes('stop'), 20_000);
  assert.deepEqual(events(), ['start', 'stop']);
  await gone(pid());
  await until('the master to see it offline', async () => (await m2.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'spare')?.connected === false);
});

// A latent worker whose connection drops (here its agent is killed mid-build and started again
// on the same machine, as a worker whose socket broke dials again) is waited for, not taken for
// stopped: it is not started a second time, it gets the build back, and once idle it is still
// stopped through the provisioner — its machine is not left running unwatched.
test('a latent worker that loses its connection and comes back is not started twice, and is still stopped when idle', async (t) => {
  const dir = tempDir('latent-reconnect');
  t.after(() => cleanup(dir));
  const { events, pid } = provisionerScripts(dir);
  const flag = join(dir, 'go-on');
  const m = await testMaster({
    latent: `requires: { labels: [latent], executor: host }\nsteps:\n  - run: echo "attempt begins"; while [ ! -e ${flag} ]; do sleep 0.1; done; echo "built after the reconnect"\n`,
  }, { dir });
  await m.close();
  writeFileSync(join(dir, 'config', 'crowdbake.yml'), provisionerConfig(dir, '2s'));
  const m2 = await testMaster({}, { dir });
  t.after(() => m2.close());
  const id = await m2.force('latent');
  await until('the build to run on the latent worker', async () => (await m2.get<{ state: string }>(`/api/v1/builds/${id}`)).state === 'running', 60_000);
  await until('the latent-worker manager to see it running', () => m2.latent.list().find((l) => l.name === 'spare')?.state === 'running');
  const first = pid();
  process.kill(first, 'SIGKILL');
  await gone(first);
  await until('the master to see the worker offline', async () => (await m2.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'spare')?.connected !== true);
  await until('the latent-worker manager to see its connection gone', () => m2.latent.list().find((l) => l.name === 'spare')?.state !== 'running');
  // The same machine's agent comes back (the test plays the machine: the provisioner started nothing new).
  execFileSync('sh', [join(dir, 'start.sh'), 'restart'], { env: { ...process.env, CROWDBAKE_WORKER_NAME: 'spare', CROWDBAKE_MASTER_URL: `${m2.url.replace(/^http/, 'ws')}/api/v1/worker`, CROWDBAKE_WORKER_TOKEN: readFileSync(join(m2.dataDir, 'provisioners', 'spare.token'), 'utf8').trim() } });
  writeFileSync(flag, '');
  const build = await m2.waitFinished(id, 60_000);
  assert.equal(build.result, 'success');
  assert.equal(build.attempt, 2, 'the attempt cut off by the kill was requeued and ran again on the reconnected worker');
  await until('the idle worker to be stopped', () => events().includes('stop'), 20_000);
  assert.deepEqual(events(), ['start', 'restart', 'stop'], 'started once by the master, once by the machine, stopped once');
  await gone(pid());
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
