import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildView, CloudView, WorkerView } from '../protocol/api.js';
import { cleanup, tempDir, until, workerProcess } from './helpers/cluster.js';
import { cloudFarm, linuxHostBuilder, STAND_IN_ACCESS_KEY } from './helpers/cloud-farm.js';

// Every test runs a real master against the LOCAL EC2 STAND-IN (test/helpers/ec2-stand-in.ts),
// whose instances are real `crowdbake worker` processes started from the user-data it was given.

const runs = (farm: { ec2: { calls: { action: string }[] } }) => farm.ec2.calls.filter((c) => c.action === 'RunInstances');

test('volunteers first: a volunteer takes the build and no instance starts; without one, the build waits burstAfter (its waitReason says so), then a cloud worker builds it and is terminated (scale to zero)', async (t) => {
  const farm = await cloudFarm(t, { hello: linuxHostBuilder('echo built on $(hostname)') }, 'burstAfter: 2s\nidleTimeout: 2s\nmax: 2\n');
  const m = farm.master;

  // A volunteer with the label: it builds, the cloud is never asked.
  const volunteerData = tempDir('cloud-volunteer');
  t.after(() => cleanup(volunteerData));
  const volunteer = workerProcess(m.url, await m.token('alice', ['linux']), volunteerData, ['--executor', 'host', '--idle-source', 'none']);
  const first = await m.waitFinished(await m.force('hello'));
  assert.equal(first.result, 'success');
  assert.equal(first.worker, 'alice');
  assert.equal(runs(farm).length, 0, 'no instance for a build a volunteer took');
  const gone = new Promise((ok) => volunteer.once('exit', ok));
  volunteer.kill('SIGTERM');
  await gone;

  // No volunteer now: it waits for one first.
  const id = await m.force('hello');
  const queued = await m.get<BuildView>(`/api/v1/builds/${id}`);
  assert.equal(queued.state, 'queued');
  assert.match(queued.waitReason ?? '', /waiting for a volunteer; a cloud worker of "burst" starts for it in \d+s if none takes it \(burstAfter 2s\)/);
  const done = await m.waitFinished(id, 90_000);
  assert.equal(done.result, 'success', await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text());
  assert.match(done.worker ?? '', /^burst-[0-9a-f]{8}$/);
  assert.equal(runs(farm).length, 1);

  // What was launched: tagged with the farm, signed with the SDK chain's key, IMDSv2 only, one-time credential in the user-data.
  const [instance] = [...farm.ec2.instances.values()];
  assert.equal(instance!.tags.get('crowdbake:farm'), farm.farmId);
  assert.equal(instance!.tags.get('crowdbake:worker'), done.worker);
  assert.equal(instance!.subnetId, 'subnet-0abc');
  assert.deepEqual(instance!.securityGroups, ['sg-0abc']);
  assert.equal(instance!.metadataTokens, 'required');
  assert.ok(farm.ec2.calls.every((c) => c.accessKeyId === STAND_IN_ACCESS_KEY));
  assert.match(instance!.userData, /^#!\/bin\/sh\n/);
  assert.match(instance!.userData, /export CROWDBAKE_WORKER_TOKEN='cbw1\.burst-[0-9a-f]{8}\.[A-Za-z0-9_-]+'/);
  assert.match(instance!.userData, /exec crowdbake 'worker' '--master' 'ws:\/\/127\.0\.0\.1:\d+\/api\/v1\/worker' '--name' 'burst-[0-9a-f]{8}' '--when' 'always'/);
  assert.ok(!instance!.userData.includes(m.adminToken), 'no admin token in user-data');

  // Its one build done, the instance is terminated: zero instances, zero cost.
  await until('the instance to be terminated', () => farm.ec2.live().length === 0, 30_000);
  assert.equal(instance!.state, 'terminated');
  await until('the pool to be empty', async () => (await m.get<CloudView[]>('/api/v1/cloud'))[0]!.instances.length === 0);
  await until('its worker to be offline', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === done.worker)?.connected === false);
});
