import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildView } from '../protocol/api.js';
import { cleanup, tempDir, testMaster, until, workerProcess } from './helpers/cluster.js';

const containers = (owner: string) =>
  execFileSync('podman', ['ps', '-a', '-q', '--filter', `label=crowdbake.owner=${owner}`]).toString().trim().split('\n').filter(Boolean);

test('after a worker is SIGKILLed mid-build, its next start removes the container and workdir it left', async (t) => {
  const m = await testMaster({ slow: `requires: { executor: container }\nsteps:\n  - run: "echo running; sleep 60"\n` });
  const dir = tempDir('wk');
  const token = await m.token('wk');
  const first = workerProcess(m.url, token, dir, ['--executor', 'container']);
  t.after(async () => { first.kill('SIGKILL'); await m.close(); cleanup(dir); });
  const id = await m.force('slow');
  await until('the build to run', async () => (await fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text())).includes('running'), 60_000);
  first.kill('SIGKILL');
  await until('the master to notice', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'queued');
  assert.equal(containers('w-wk').length, 1, 'the killed worker left its container running');
  assert.equal(readdirSync(join(dir, 'work')).length, 1, 'and its workdir');

  const second = workerProcess(m.url, token, dir, ['--executor', 'container']);
  t.after(() => second.kill('SIGKILL'));
  await until('the leftovers to be removed', () => second.output().includes('removed 1 leftover container sandbox(es)'), 30_000);
  // The requeued build now runs in a new container: exactly one, the new one.
  await until('the build to run again', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).attempt === 2 && containers('w-wk').length === 1, 30_000);
  second.kill('SIGKILL');
  await new Promise((r) => second.once('exit', r));
  for (const c of containers('w-wk')) execFileSync('podman', ['rm', '-f', '-t', '0', c]);
});
