import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import { releaseStaleDiskLimits } from '../worker/executors/disk-limit.js';
import { removeContainers } from '../worker/executors/podman.js';
import { removeWarmLeftovers, WARM_AGENT_LABEL, WARM_ROOT } from '../worker/executors/warm-pool.js';
import { cleanup, tempDir, testMaster, until, workerProcess } from './helpers/cluster.js';

const containers = (owner: string) =>
  execFileSync('podman', ['ps', '-a', '-q', '--filter', `label=crowdbake.owner=${owner}`]).toString().trim().split('\n').filter(Boolean);

/** The owner's containers as [id, agent stamp]: a warm sandbox (made ahead, or taken by a build) carries its agent's stamp, one made on demand none. */
const labelled = (owner: string): { id: string; stamp: string }[] =>
  execFileSync('podman', ['ps', '-a', '--filter', `label=crowdbake.owner=${owner}`, '--format', `{{.ID}} {{index .Labels "${WARM_AGENT_LABEL}"}}`])
    .toString().split('\n').filter(Boolean).map((l) => { const [id, stamp] = l.trim().split(' '); return { id: id!, stamp: stamp ?? '' }; });
const onDemand = (owner: string) => labelled(owner).filter((c) => c.stamp === '').map((c) => c.id);
const warm = (owner: string) => labelled(owner).filter((c) => c.stamp !== '');

const mounted = (path: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);

test('after a worker is SIGKILLed mid-build, its next start removes the container, the warm one made behind it, the mounted workdir and its image', async (t) => {
  const m = await testMaster({ slow: `requires: { executor: container }\nsteps:\n  - run: "echo running; sleep 60"\nlimits: { disk: 32m }\n` });
  const dir = tempDir('wk');
  const token = await m.token('wk');
  const first = workerProcess(m.url, token, dir, ['--executor', 'container']);
  // Should the test fail before the second worker swept them: the killed worker's containers go
  // too (left running, `sleep 60` in a container named crowdbake-b1-a1-…, they misled another
  // test that looked for its build's container by that name).
  t.after(async () => {
    first.kill('SIGKILL'); await m.close();
    const left = containers('w-wk');
    if (left.length) await removeContainers(left);
    await removeWarmLeftovers('w-wk', 'crowdbake.owner'); await releaseStaleDiskLimits(dir); cleanup(dir);
  });
  const id = await m.force('slow');
  await until('the build to run', async () => (await fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text())).includes('running'), 60_000);
  // Behind the build (made on demand: the pool had not seen its environment yet) the pool makes a warm one for the next.
  const warmLeft = await until('the warm sandbox made behind the build', () => { const w = warm('w-wk'); return w.length === 1 ? w[0] : null; }, 60_000);
  first.kill('SIGKILL');
  await until('the master to notice', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'queued');
  const buildLeft = onDemand('w-wk');
  assert.equal(buildLeft.length, 1, 'the killed worker left its build\'s container running');
  assert.deepEqual(warm('w-wk'), [warmLeft], 'and its warm container, labelled with the dead agent\'s stamp');
  const deadSlots = join(WARM_ROOT, 'w-wk', warmLeft.stamp);
  assert.ok(existsSync(deadSlots), 'and the warm container\'s slot directory');
  const firstWorkdir = join(dir, 'work', `b${id}-a1`);
  assert.deepEqual(readdirSync(join(dir, 'work')).sort(), [`b${id}-a1`, `b${id}-a1.img`], 'and its workdir with its disk image');
  assert.ok(mounted(firstWorkdir), 'the workdir is a mounted filesystem of 32 MiB');

  const second = workerProcess(m.url, token, dir, ['--executor', 'container']);
  t.after(() => second.kill('SIGKILL'));
  // Both are the dead worker's leftovers: the build's container and the warm one.
  await until('the leftovers to be removed', () => second.output().includes('removed 2 leftover container sandbox(es)'), 30_000);
  assert.ok(!mounted(firstWorkdir), 'the old workdir was unmounted');
  assert.equal(existsSync(deadSlots), false, 'the dead agent\'s slots were removed');
  const before = new Set([...buildLeft, warmLeft.id]);
  // The requeued build now runs in a new container: exactly one made on demand, the new one; no container of the first worker is left.
  await until('the build to run again', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).attempt === 2 && onDemand('w-wk').length === 1, 30_000);
  assert.deepEqual(labelled('w-wk').filter((c) => before.has(c.id)), [], 'nothing of the killed worker is left');
  assert.ok(warm('w-wk').every((c) => c.stamp !== warmLeft.stamp), 'a warm container now is the second worker\'s own');
  second.kill('SIGKILL');
  await new Promise((r) => second.once('exit', r));
  // As the worker does: podman may still hold the killed container's /dev/shm for a moment.
  const left = containers('w-wk');
  if (left.length) await removeContainers(left);
  // The second worker was killed too: its workdir is still mounted.
  assert.ok(mounted(join(dir, 'work', `b${id}-a2`)));
  await releaseStaleDiskLimits(dir);
  await removeWarmLeftovers('w-wk', 'crowdbake.owner');
});

test('a worker that stops cleanly (SIGTERM) removes its warm sandboxes and their slots before it exits', async (t) => {
  const m = await testMaster({ quick: 'requires: { executor: container }\nsteps:\n  - run: "echo done"\n' });
  const dir = tempDir('wt');
  const w = workerProcess(m.url, await m.token('wt'), dir, ['--executor', 'container']);
  // Should the test fail: what the worker left goes (the sweep a next start would do).
  t.after(async () => { w.kill('SIGKILL'); await m.close(); await removeWarmLeftovers('w-wt', 'crowdbake.owner'); cleanup(dir); });
  assert.equal((await m.waitFinished(await m.force('quick'), 60_000)).result, 'success');
  await until('a warm sandbox for the next build', () => warm('w-wt').length === 1, 60_000);
  assert.ok(existsSync(join(WARM_ROOT, 'w-wt')));
  const exited = new Promise<number | null>((r) => w.once('exit', r));
  w.kill('SIGTERM');
  assert.equal(await exited, 0, w.output());
  assert.deepEqual(containers('w-wt'), [], 'no container of the worker is left once it exited');
  assert.equal(existsSync(join(WARM_ROOT, 'w-wt')), false, 'nor its slots');
});
