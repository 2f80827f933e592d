import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import type { BuildView, CloudView, WorkerView } from '../protocol/api.js';
import { cleanup, tempDir, until, workerProcess } from './helpers/cluster.js';
import { cloudFarm, linuxHostBuilder, STAND_IN_ACCESS_KEY, type CloudFarm } from './helpers/cloud-farm.js';

// Every test runs a real master against the LOCAL EC2 STAND-IN (test/helpers/ec2-stand-in.ts),
// whose instances are real `crowdbake worker` processes started from the user-data it was given.

const runs = (farm: CloudFarm) => farm.ec2.calls.filter((c) => c.action === 'RunInstances');

test('volunteers first: a volunteer takes the build and no instance starts; without one, the build waits burstAfter (its waitReason says so), then a cloud worker builds it and is terminated (scale to zero)', async (t) => {
  const farm = await cloudFarm(t, { hello: linuxHostBuilder('echo built on $(hostname)') }, 'burstAfter: 2s\nidleTimeout: 2s\nmax: 2\n');
  const m = farm.master;

  // A volunteer with the label: it builds, the cloud is never asked.
  const volunteerData = tempDir('cloud-volunteer');
  t.after(() => cleanup(volunteerData));
  const volunteer = workerProcess(m.url, await m.token('alice', ['linux']), volunteerData, ['--executor', 'host', '--idle-source', 'none']);
  await until('alice to connect', async () => (await m.get<WorkerView[]>('/api/v1/workers')).find((w) => w.name === 'alice')?.connected);
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

test('cloud: preferred starts at once (burstAfter 1h notwithstanding); the queue scales the pool up to max, never past it, then back to zero', async (t) => {
  const farm = await cloudFarm(t, {
    rush: linuxHostBuilder('echo rushing; sleep 1', 'cloud: preferred\n'),
    slow: linuxHostBuilder('echo slow'),
  }, 'burstAfter: 1h\nidleTimeout: 1s\nmax: 2\n');
  const m = farm.master;
  let most = 0;
  const watch = setInterval(() => { most = Math.max(most, farm.ec2.live().length); }, 20);
  t.after(() => clearInterval(watch));
  const ids = [await m.force('rush'), await m.force('rush'), await m.force('rush')];
  const slow = await m.force('slow');
  const builds = await Promise.all(ids.map((id) => m.waitFinished(id, 120_000)));
  for (const b of builds) assert.equal(b.result, 'success');
  assert.equal(new Set(builds.map((b) => b.worker)).size, 3, 'one build per cloud worker (one-time credentials)');
  assert.equal(most, 2, 'at most max instances at once');
  await until('zero instances', () => farm.ec2.live().length === 0, 30_000);
  // The `fallback` builder's build still waits for a volunteer (burstAfter 1h): no instance for it.
  const waiting = await m.get<BuildView>(`/api/v1/builds/${slow}`);
  assert.equal(waiting.state, 'queued');
  assert.match(waiting.waitReason ?? '', /no worker is connected; waiting for a volunteer; a cloud worker of "burst" starts for it in \d+s/);
  assert.equal(runs(farm).length, 3);
});

test('instance types are tried in order and spot falls back to on-demand: Unsupported and InsufficientInstanceCapacity fall through', async (t) => {
  const farm = await cloudFarm(t, { hello: linuxHostBuilder('echo ok', 'cloud: preferred\n') }, 'instanceTypes: [c9.nope, t3.small]\nspot: true\nidleTimeout: 1s\n');
  farm.ec2.refuse('c9.nope', 'any', 'Unsupported');
  farm.ec2.refuse('t3.small', true, 'InsufficientInstanceCapacity');
  const b = await farm.master.waitFinished(await farm.master.force('hello'), 90_000);
  assert.equal(b.result, 'success');
  const tried = runs(farm).map((c) => `${c.params.get('InstanceType')} ${c.params.get('InstanceMarketOptions.MarketType') ?? 'on-demand'}`);
  assert.deepEqual(tried, ['c9.nope spot', 't3.small spot', 'c9.nope on-demand', 't3.small on-demand']);
  const [i] = [...farm.ec2.instances.values()];
  assert.equal(i!.type, 't3.small');
  assert.equal(i!.spot, false);
});

test('budget: at the instance-hour cap nothing new starts, the build says why it waits, and a restarted master still knows the day\'s hours', async (t) => {
  // 0.0004 h = 1.44 s of instance time a day.
  const farm = await cloudFarm(t, { hello: linuxHostBuilder('echo first; sleep 2', 'cloud: preferred\n') }, 'idleTimeout: 1s\nbudget: { hoursPerDay: 0.0004, hoursPerMonth: 100 }\n');
  let m = farm.master;
  const first = await m.waitFinished(await m.force('hello'), 90_000);
  assert.equal(first.result, 'success');
  await until('zero instances', () => farm.ec2.live().length === 0, 30_000);
  const id = await m.force('hello');
  const why = await until('the wait reason to name the budget', async () => {
    const r = (await m.get<BuildView>(`/api/v1/builds/${id}`)).waitReason;
    return r?.includes('budget') ? r : null;
  });
  assert.match(why, /the cloud budget of "burst" for today is spent \(0\.\d+ of 0\.0004 instance-hours, budget\.hoursPerDay\); no cloud worker starts before 00:00 UTC/);
  const cloud = (await m.get<CloudView[]>('/api/v1/cloud'))[0]!;
  assert.match(cloud.blocked ?? '', /budget\.hoursPerDay/);
  assert.ok(cloud.budget.todayHours >= 0.0004);
  assert.equal(runs(farm).length, 1);

  m = await farm.restart();
  const after = (await m.get<CloudView[]>('/api/v1/cloud'))[0]!;
  assert.ok(after.budget.todayHours >= 0.0004, `the day's hours survive a restart (${after.budget.todayHours})`);
  assert.match(after.blocked ?? '', /budget\.hoursPerDay/);
  const still = await m.get<BuildView>(`/api/v1/builds/${id}`);
  assert.equal(still.state, 'queued');
  assert.match(still.waitReason ?? '', /budget\.hoursPerDay/);
  assert.equal(runs(farm).length, 1, 'nothing started at the cap, before or after the restart');
});

test('the reaper marks a tagged instance with no worker, terminates it one sweep later, and leaves other farms\' instances alone', async (t) => {
  const farm = await cloudFarm(t, {}, 'bootGrace: 1s\n');
  const leaked = farm.ec2.inject({ 'crowdbake:farm': farm.farmId, 'crowdbake:provisioner': 'burst', 'crowdbake:worker': 'burst-deadbeef' }, 60_000);
  const young = farm.ec2.inject({ 'crowdbake:farm': farm.farmId, 'crowdbake:provisioner': 'burst', 'crowdbake:worker': 'burst-0000beef' }, 0);
  const other = farm.ec2.inject({ 'crowdbake:farm': 'farm-0123456789abcdef', 'crowdbake:provisioner': 'burst', 'crowdbake:worker': 'burst-cafe' }, 60_000);
  await until('the leaked instance to be terminated', () => leaked.state === 'terminated', 30_000);
  const calls = farm.ec2.calls;
  const marked = calls.findIndex((c) => c.action === 'CreateTags' && c.params.get('ResourceId.1') === leaked.id);
  const killed = calls.findIndex((c) => c.action === 'TerminateInstances' && [...c.params.values()].includes(leaked.id));
  assert.ok(marked >= 0 && killed > marked, 'marked (CreateTags crowdbake:orphaned-at) on one sweep, terminated on a later one');
  assert.ok(calls.slice(marked + 1, killed).some((c) => c.action === 'DescribeInstances'), 'a sweep between the mark and the termination');
  assert.match(leaked.tags.get('crowdbake:orphaned-at') ?? '', /^\d{4}-\d\d-\d\dT/);
  // Younger than bootGrace when first seen, it is reaped later, the same way; another farm's never.
  await until('the young one too, once past its grace', () => young.state === 'terminated', 30_000);
  assert.equal(other.state, 'running');
  assert.equal(other.tags.has('crowdbake:orphaned-at'), false);
});

test('a one-time credential is refused on its second use with a clear error, and once expired unused', async (t) => {
  const farm = await cloudFarm(t, { hello: linuxHostBuilder('echo ok; sleep 2', 'cloud: preferred\n') }, 'idleTimeout: 1s\n');
  const m = farm.master;
  const id = await m.force('hello');
  const running = await until('the build to run on a cloud worker', async () => {
    const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
    return b.state === 'running' ? b : null;
  }, 90_000);
  const [instance] = [...farm.ec2.instances.values()];
  const token = /export CROWDBAKE_WORKER_TOKEN='([^']+)'/.exec(instance!.userData)![1]!;
  const data = tempDir('cloud-second-use');
  t.after(() => cleanup(data));
  const second = workerProcess(m.url, token, data, ['--executor', 'host', '--idle-source', 'none']);
  const code = await new Promise<number | null>((ok) => second.once('exit', ok));
  assert.equal(code, 1);
  assert.match(second.output(), /authentication failed: this one-time credential was already used \(at \d{4}-[^)]+\); it is good for one connection only/);
  assert.equal((await m.waitFinished(id, 60_000)).result, 'success', 'the first worker went on undisturbed');
  assert.equal(running.worker, instance!.tags.get('crowdbake:worker'));

  // Unused past its expiry: refused too.
  const { openStore } = await import('../master/store/open-store.js');
  const { createOneTimeCredential } = await import('../master/tokens.js');
  const store = await openStore(`sqlite:${m.dataDir}/crowdbake.db`);
  const stale = await createOneTimeCredential(store, 'burst-stale', ['linux'], 1000);
  await store.close();
  await new Promise((r) => setTimeout(r, 1100));
  const staleData = tempDir('cloud-stale');
  t.after(() => cleanup(staleData));
  const late = workerProcess(m.url, stale, staleData, ['--executor', 'host', '--idle-source', 'none']);
  assert.equal(await new Promise<number | null>((ok) => late.once('exit', ok)), 1);
  assert.match(late.output(), /authentication failed: this one-time credential expired unused at \d{4}-/);
});

test('a spot interruption notice drains the cloud worker: its build is requeued at once as an infrastructure retry (maxAttempts: 1 and still no failure) and finishes on a new instance', async (t) => {
  // The first attempt leaves a mark and runs until it is interrupted; the next one finishes at once.
  const mark = join(tempDir('cloud-spot-mark'), 'started');
  t.after(() => cleanup(dirname(mark)));
  const step = `if [ -e ${mark} ]; then echo finished; else touch ${mark}; echo started attempt; sleep 120; echo finished; fi`;
  const farm = await cloudFarm(t, { hello: linuxHostBuilder(step, 'cloud: preferred\n') }, 'spot: true\nidleTimeout: 1s\n', 'maxAttempts: 1\n');
  const m = farm.master;
  const id = await m.force('hello');
  const log = () => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
  await until('the first attempt to start', async () => (await log()).includes('started attempt'), 90_000);
  const [first] = [...farm.ec2.instances.values()];
  assert.equal(first!.spot, true);
  farm.ec2.interrupt(first!.id);
  const b = await m.waitFinished(id, 120_000);
  const text = await log();
  assert.equal(b.result, 'success', text);
  assert.equal(b.attempt, 2);
  assert.notEqual(b.worker, first!.tags.get('crowdbake:worker'));
  assert.match(text, /worker burst-[0-9a-f]{8} is draining \(spot interruption notice: terminate at \d{4}-[^)]+\); an infrastructure retry \(1\), not counted as a failed attempt; build requeued \(0 failed of 1\)/);
  assert.equal(text.match(/^finished$/gm)?.length, 1, 'the interrupted attempt never finished');
  await until('the interrupted instance to be terminated', () => first!.state === 'terminated', 30_000);
  await until('zero instances', () => farm.ec2.live().length === 0, 30_000);
});

test('warm pool: a done on-demand instance is stopped, not terminated, and the next build starts it again with new user-data and a new one-time credential', async (t) => {
  const farm = await cloudFarm(t, { hello: linuxHostBuilder('echo warm', 'cloud: preferred\n') }, 'warmPool: 1\nidleTimeout: 1s\n');
  const m = farm.master;
  const first = await m.waitFinished(await m.force('hello'), 90_000);
  assert.equal(first.result, 'success');
  const [instance] = [...farm.ec2.instances.values()];
  await until('the instance to be stopped into the warm pool', () => instance!.state === 'stopped', 30_000);
  const firstUserData = instance!.userData;
  assert.match(firstUserData, /^Content-Type: multipart\/mixed; boundary=/);
  assert.match(firstUserData, /cloud_final_modules:\n- \[scripts-user, always\]/, 'user-data that runs on every boot');
  assert.equal((await m.get<CloudView[]>('/api/v1/cloud'))[0]!.instances.find((i) => i.id === instance!.id)?.state, 'stopped');

  const second = await m.waitFinished(await m.force('hello'), 90_000);
  assert.equal(second.result, 'success');
  assert.notEqual(second.worker, first.worker, 'a new worker name, a new credential');
  assert.equal(runs(farm).length, 1, 'no second RunInstances: the warm instance was started');
  assert.equal(instance!.starts, 1);
  assert.equal(instance!.tags.get('crowdbake:worker'), second.worker);
  const token = (u: string) => /CROWDBAKE_WORKER_TOKEN='([^']+)'/.exec(u)![1];
  assert.notEqual(token(instance!.userData), token(firstUserData));
  await until('stopped again', () => instance!.state === 'stopped', 30_000);
  assert.equal(farm.ec2.live().filter((i) => i.state !== 'stopped').length, 0);
});

test('never kill a busy machine: past idleTimeout and over the day\'s budget during its build, the instance runs it to the end and is terminated only then', async (t) => {
  const farm = await cloudFarm(t, { hello: linuxHostBuilder('echo begin; sleep 3; echo end', 'cloud: preferred\n') }, 'idleTimeout: 200ms\nbudget: { hoursPerDay: 0.0001 }\n');
  const m = farm.master;
  const id = await m.force('hello');
  let terminatedWhileRunning = false;
  const watch = setInterval(() => {
    void m.get<BuildView>(`/api/v1/builds/${id}`).then((b) => {
      if (b.state === 'running' && [...farm.ec2.instances.values()].some((i) => i.state === 'terminated')) terminatedWhileRunning = true;
    }).catch(() => undefined);
  }, 50);
  t.after(() => clearInterval(watch));
  const b = await m.waitFinished(id, 90_000);
  clearInterval(watch);
  assert.equal(b.result, 'success', await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text());
  assert.match(await (await fetch(`${m.url}/api/v1/builds/${id}/log`)).text(), /begin\nend\n/);
  assert.equal(terminatedWhileRunning, false);
  assert.equal(b.attempt, 1);
  const [instance] = [...farm.ec2.instances.values()];
  await until('the instance to be terminated after the build', () => instance!.state === 'terminated', 30_000);
  assert.match((await m.get<CloudView[]>('/api/v1/cloud'))[0]!.blocked ?? '', /budget\.hoursPerDay/, 'the cap was reached during the build');
});
