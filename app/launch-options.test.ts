import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_MASTER, LaunchError, masterUrlFromOutput, normalizeMasterUrl, parseLaunch } from './launch-options.js';

test('connects to the default master, --master or CROWDBAKE_MASTER', () => {
  assert.deepEqual(parseLaunch([]), { mode: 'connect', masterUrl: DEFAULT_MASTER });
  assert.deepEqual(parseLaunch(['--master', 'http://farm.example:8585/']), { mode: 'connect', masterUrl: 'http://farm.example:8585' });
  assert.deepEqual(parseLaunch(['--master=https://farm.example/cb/']), { mode: 'connect', masterUrl: 'https://farm.example/cb' });
  assert.deepEqual(parseLaunch([], { CROWDBAKE_MASTER: 'http://10.0.0.2:9000' }), { mode: 'connect', masterUrl: 'http://10.0.0.2:9000' });
  assert.deepEqual(parseLaunch(['--no-sandbox', '--master', 'http://a:1']), { mode: 'connect', masterUrl: 'http://a:1' });
});

test('starts a master', () => {
  assert.deepEqual(parseLaunch(['--start-master', '/etc/cb']), { mode: 'start', configDir: '/etc/cb', dataDir: null, listen: '127.0.0.1:8585' });
  assert.deepEqual(parseLaunch(['--start-master', 'c', '--data', 'd', '--listen', '0.0.0.0:9']), { mode: 'start', configDir: 'c', dataDir: 'd', listen: '0.0.0.0:9' });
});

test('refuses what it cannot use', () => {
  assert.throws(() => parseLaunch(['--master']), LaunchError);
  assert.throws(() => parseLaunch(['--master', 'file:///x']), /http or https/);
  assert.throws(() => normalizeMasterUrl('farm:8585x'), LaunchError);
  assert.throws(() => parseLaunch(['--master', 'http://a', '--start-master', 'c']), /either/);
});

test('reads the URL a started master prints', () => {
  assert.equal(masterUrlFromOutput('crowdbake master: dashboard and API at http://127.0.0.1:8585/'), 'http://127.0.0.1:8585');
  assert.equal(masterUrlFromOutput('crowdbake master: dashboard and API at http://[::1]:40123/'), 'http://[::1]:40123');
  assert.equal(masterUrlFromOutput('crowdbake master: 2 builder(s) from /x/builders'), null);
});

test('the worker agent: its data dir, and a token makes the app start it with the app as idle source', async () => {
  const { parseAgentLaunch, workerArgs } = await import('./launch-options.js');
  assert.deepEqual(parseAgentLaunch([]), { dataDir: null, token: null });
  assert.deepEqual(parseAgentLaunch(['--worker-data', '/w', '--worker-token', 'cbw1.alice.s3cret']), { dataDir: '/w', token: 'cbw1.alice.s3cret' });
  assert.deepEqual(parseAgentLaunch([], { CROWDBAKE_WORKER_TOKEN: 'cbw1.bob.x' }).token, 'cbw1.bob.x');
  assert.throws(() => parseAgentLaunch(['--worker-token', 'hunter2']), /must be a worker token/);
  assert.deepEqual(workerArgs('/cli.js', 'http://m:1', { dataDir: null, token: 'cbw1.a.b' }, '/w'),
    ['/cli.js', 'worker', '--master', 'http://m:1', '--data', '/w', '--idle-source', 'app'], 'the token is not on the command line');
  const { workerEnv } = await import('./launch-options.js');
  assert.equal(workerEnv({ dataDir: null, token: 'cbw1.a.b' }, {}).CROWDBAKE_WORKER_TOKEN, 'cbw1.a.b');
});
