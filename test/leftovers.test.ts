import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import { releaseStaleDiskLimits } from '../worker/executors/disk-limit.js';
import { removeContainers } from '../worker/executors/podman.js';
import { cleanup, tempDir, testMaster, until, workerProcess } from './helpers/cluster.js';

const containers = (owner: string) =>
  execFileSync('podman', ['ps', '-a', '-q', '--filter', `label=crowdbake.owner=${owner}`]).toString().trim().split('\n').filter(Boolean);

const mounted = (path: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);

test('after a worker is SIGKILLed mid-build, its next start removes the container, the mounted workdir and its image', async (t) => {
  const m = await testMaster({ slow: `requires: { executor: container }\nsteps:\n  - run: "echo running; sleep 60"\nlimits: { disk: 32m }\n` });
  const dir = tempDir('wk');
  const token = await m.token('wk');
  const first = workerProcess(m.url, token, dir, ['--executor', 'container']);
  t.after(async () => { first.kill('SIGKILL'); await m.close(); await releaseStaleDiskLimits(dir); cleanup(dir); });
  const id = await m.force('slow');
  await until('the build to run', async () => (await fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text())).includes('running'), 60_000);
  first.kill('SIGKILL');
  await until('the master to notice', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'queued');
  assert.equal(containers('w-wk').length, 1, 'the killed worker left its container running');
  const firstWorkdir = join(dir, 'work', `b${id}-a1`);
  assert.deepEqual(readdirSync(join(dir, 'work')).sort(), [`b${id}-a1`, `b${id}-a1.img`], 'and its workdir with its disk image');
  assert.ok(mounted(firstWorkdir), 'the workdir is a mounted filesystem of 32 MiB');

  const second = workerProcess(m.url, token, dir, ['--executor', 'container']);
  t.after(() => second.kill('SIGKILL'));
  await until('the leftovers to be removed', () => second.output().includes('removed 1 leftover container sandbox(es)'), 30_000);
  assert.ok(!mounted(firstWorkdir), 'the old workdir was unmounted');
  // The requeued build now runs in a new container: exactly one, the new one.
  await until('the build to run again', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).attempt === 2 && containers('w-wk').length === 1, 30_000);
  second.kill('SIGKILL');
  await new Promise((r) => second.once('exit', r));
  // As the worker does: podman may still hold the killed container's /dev/shm for a moment.
  const left = containers('w-wk');
  if (left.length) await removeContainers(left);
  // The second worker was killed too: its workdir is still mounted.
  assert.ok(mounted(join(dir, 'work', `b${id}-a2`)));
  await releaseStaleDiskLimits(dir);
});
