import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { startWorker } from '../worker/agent.js';
import { CLI, cleanup, tempDir, testMaster } from './helpers/cluster.js';

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('every command has --help', () => {
  for (const cmd of [[], ['demo'], ['master'], ['worker'], ['token'], ['build']]) {
    const r = run([...cmd, '--help']);
    assert.equal(r.code, 0, `${cmd.join(' ')} --help: ${r.err}`);
    assert.match(r.out, /usage: crowdbake/);
  }
});

test('bad flags and values exit 2 with a message naming them', () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['worker', '--bogus'], /unknown flag '--bogus'/],
    [['worker', '--master', 'ws://x'], /--token-file FILE \(or \$CROWDBAKE_WORKER_TOKEN\) is required/],
    [['worker', '--master', 'ws://x', '--token', 't', '--when', 'always', '--memory', '4gallons'], /--memory: "4gallons" is not a size/],
    [['worker', '--master', 'ws://x', '--token', 't', '--executor', 'teleport'], /--executor "teleport" must be one of auto, container, vm, host/],
    [['worker', '--master', 'ws://x', '--token', 't', '--idle-after', 'soon'], /--idle-after: "soon" is not a duration/],
    [['worker', '--master', 'ws://x', '--token', 't', '--cpus=-1'], /--cpus "-1" is not a positive number/],
    [['worker', '--master', 'ws://x', '--token', 't', '--cpus', '-1'], /'--cpus' argument is ambiguous/],
    [['worker', '--master', 'ws://x', '--token', 't', '--idle-source', 'crystal-ball'], /--idle-source "crystal-ball" must be one of auto, [a-z, ]*\bx11\b[a-z, ]*\bnone\b/],
    [['limits', '--schedule', '25:00-26:00', '--data', '/nonexistent'], /--schedule "25:00-26:00" must be HH:MM-HH:MM/],
    [['master', '--listen', 'nowhere'], /--listen "nowhere" must be HOST:PORT/],
    [['demo', '--port', '99999'], /--port "99999" is not a port number/],
    [['build'], /which BUILDER/],
    [['token', 'create', '--data', '/tmp/x', '--name', 'a', 'extra'], /unexpected argument "extra"/],
  ];
  for (const [args, re] of cases) {
    const r = run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, ${r.err}`);
    assert.match(r.err, re, args.join(' '));
  }
});

test('token create prints the token last; list and revoke work; a bad name is refused', () => {
  const data = tempDir('tok');
  try {
    const r = run(['token', 'create', '--data', data, '--name', 'alice', '--labels', 'linux,fast']);
    assert.equal(r.code, 0, r.err);
    const last = r.out.trim().split('\n').at(-1)!;
    assert.match(last, /^cbw1\.alice\.[A-Za-z0-9_-]{43}$/);
    assert.equal(run(['token', 'create', '--data', data, '--name', 'alice']).code, 1);
    assert.match(run(['token', 'create', '--data', data, '--name', 'bad name!']).err, /token name "bad name!"/);
    assert.match(run(['token', 'list', '--data', data]).out, /^alice\tactive\tlabels=linux,fast/m);
    assert.equal(run(['token', 'revoke', 'alice', '--data', data]).code, 0);
    assert.match(run(['token', 'list', '--data', data]).out, /^alice\trevoked/m);
    assert.equal(run(['token', 'revoke', 'alice', '--data', data]).code, 1);
  } finally {
    cleanup(data);
  }
});

test('crowdbake build --wait streams the log and exits with the result', async (t) => {
  const m = await testMaster({
    good: `requires: { executor: host }\nsteps:\n  - run: echo "the log line from the build"\n`,
    bad: `requires: { executor: host }\nsteps:\n  - run: exit 4\n`,
  });
  const dir = tempDir('w');
  const w = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: dir, executor: 'host', labels: [], log: () => undefined });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const build = (args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((ok) => {
    const c = spawn(process.execPath, [CLI, 'build', ...args, '--master', m.url, '--wait'], { env: { ...process.env, CROWDBAKE_ADMIN_TOKEN: m.adminToken } });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    c.on('close', (code) => ok({ code, out, err }));
  });
  const good = await build(['good']);
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, /^\d+\n/);
  assert.match(good.out, /the log line from the build/);
  const bad = await build(['bad']);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /failure: step step-1 exited with 4/);
  const missing = await build(['nope']);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /no builder named "nope"/);
});

test('crowdbake demo --once builds the sample project end to end', () => {
  const data = tempDir('demo');
  try {
    const r = run(['demo', '--port', '0', '--data', data, '--no-open', '--once']);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /Hello, volunteer! Built by Crowdbake\./);
    assert.match(r.out, /build 1 finished: success/);
    assert.match(r.out, /artifact hello-1\.0\.tar\.gz +\d+ bytes +sha256 [0-9a-f]{64}/);
    assert.match(r.out, /Dashboard: +http:\/\/127\.0\.0\.1:\d+\//);
    assert.match(r.out, /Admin token: +cba1\./);
    // A second run reuses the store and worker token, and builds again.
    const again = run(['demo', '--port', '0', '--data', data, '--no-open', '--once']);
    assert.equal(again.code, 0, again.out + again.err);
    assert.match(again.out, /build 2 finished: success/);
  } finally {
    cleanup(data);
  }
});
