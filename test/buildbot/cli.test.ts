import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FakeMaster } from './fake-master.js';
import { ROOT } from './fixture.js';

const CLI = join(ROOT, 'bin', 'crowdbake.js');

test('crowdbake worker --buildbot: bad usage exits 2 naming the flag', () => {
  const cases: [string[], RegExp][] = [
    [['--buildbot', 'ws://127.0.0.1:1', '--password', 'p'], /--name is required/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'w'], /--password-file FILE \(or \$CROWDBAKE_BUILDBOT_PASSWORD\) is required/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'w', '--password', 'p', '--executor', 'vm'], /--executor "vm" must be one of container, host/],
    [['--buildbot', 'http://127.0.0.1:1', '--name', 'w', '--password', 'p'], /--buildbot "http:\/\/127.0.0.1:1" must be ws:\/\/HOST:PORT/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'a:b', '--password', 'p'], /--name "a:b" must not contain ":"/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'w', '--password', 'p', '--master', 'ws://x'], /--master cannot be used with --buildbot/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'w', '--password', 'p', '--disk', '1g'], /--disk cannot be used with --buildbot/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'w', '--password', 'p', '--when', 'never'], /--when "never" must be one of idle, always/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'w', '--password', 'p', '--idle-source', 'mouse'], /--idle-source "mouse" must be one of auto, (\w+, )*none/],
    [['--buildbot', 'ws://127.0.0.1:1', '--name', 'w', '--password', 'p', '--memory', 'lots'], /--memory: /],
  ];
  for (const [args, message] of cases) {
    const r = spawnSync(process.execPath, [CLI, 'worker', ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.match(spawnSync(process.execPath, [CLI, 'worker', '--help'], { encoding: 'utf8' }).stdout, /--buildbot ws:\/\/HOST:PORT --name N --password-file FILE/);
});

test('crowdbake worker --buildbot serves a master until it says shutdown, then exits 0', async () => {
  const master = await FakeMaster.start((auth) => auth === `Basic ${Buffer.from('w:pw').toString('base64')}`);
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bbcli-'));
  const child = spawn(process.execPath, [CLI, 'worker', '--buildbot', master.url, '--name', 'w', '--password', 'pw', '--executor', 'host', '--basedir', dir, '--data', dir, '--idle-source', 'none'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
  try {
    const conn = await master.connection();
    const info = (await conn.request('get_worker_info')).result as Record<string, unknown>;
    assert.equal(info.basedir, dir);
    assert.equal((await conn.request('shutdown')).result, null);
    assert.equal(await exited, 0);
    assert.match(out, /serving BuildBot master ws:\/\/127\.0\.0\.1:\d+ as w \(host executor/);
  } finally {
    child.kill('SIGKILL');
    await master.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
