import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FakeMaster, text, type FakeConnection } from './fake-master.js';
import { ROOT, until } from './fixture.js';

// The sandbox-escape suite (test/sandbox-escape.test.ts) for BuildBot's container mode: a
// BuildBot master (scripted over msgpack) sends shell steps that try to get out, to a real
// `crowdbake worker --buildbot … --executor container` process whose HOME holds a secret,
// with real podman. Each attempt first shows the step ran in the container (it prints its
// marker), then that it got nowhere: it prints "ESCAPED: …" when it gets through, and the
// host's side is checked too.

process.env.CROWDBAKE_CONTAINER_FAST ??= '0';
const CLI = join(ROOT, 'bin', 'crowdbake.js');

const root = mkdtempSync(join(tmpdir(), 'crowdbake-bbesc-'));
const home = join(root, 'home');
const dataDir = join(root, 'data');
const victimDir = join(root, 'victim');
const victim = join(victimDir, 'victim.txt');
const secretText = `volunteer-secret-${randomBytes(8).toString('hex')}`;
const password = `bb-password-${randomBytes(8).toString('hex')}`;
const basedir = join(dataDir, 'buildbot', 'esc');
const build = join(basedir, 'b', 'build');

type Run = Awaited<ReturnType<FakeConnection['run']>>;
const rcOf = (r: Run): unknown => r.updates.find(([k]) => k === 'rc')?.[1];
const out = (r: Run): string => text(r.updates, 'stdout') + text(r.updates, 'stderr');

describe('sandbox escape attempts on BuildBot\'s container mode (real podman, crowdbake worker --buildbot)', { timeout: 300_000 }, () => {
  let master: FakeMaster;
  let conn: FakeConnection;
  let worker: ChildProcess;
  let workerOutput = '';
  let seq = 0;
  const shell = async (script: string, env: Record<string, string> = {}): Promise<Run> => {
    const r = await conn.run('shell', { workdir: build, command: ['sh', '-c', script], env, timeout: 60, logEnviron: true }, `e${++seq}`);
    assert.equal(r.response.result, null, 'the worker took the command');
    assert.doesNotMatch(out(r), /^ESCAPED/m, out(r));
    assert.ok(!JSON.stringify(r.updates).includes(secretText), 'the volunteer\'s secret is not in the log');
    assert.ok(!JSON.stringify(r.updates).includes(password), 'the worker\'s password is not in the log');
    return r;
  };

  before(async () => {
    mkdirSync(home, { recursive: true });
    mkdirSync(victimDir);
    writeFileSync(join(home, 'secret.txt'), `${secretText}\n`, { mode: 0o600 });
    writeFileSync(victim, 'untouched\n');
    master = await FakeMaster.start((auth) => auth === `Basic ${Buffer.from(`esc:${password}`).toString('base64')}`);
    // The password through the environment (not on the command line), as a volunteer should.
    worker = spawn(process.execPath, [CLI, 'worker', '--buildbot', master.url, '--name', 'esc', '--executor', 'container', '--data', dataDir, '--idle-source', 'none', '--when', 'always'], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: home, CROWDBAKE_BUILDBOT_PASSWORD: password },
    });
    worker.stdout!.on('data', (c: Buffer) => { workerOutput += c.toString(); });
    worker.stderr!.on('data', (c: Buffer) => { workerOutput += c.toString(); });
    conn = await master.connection();
    await until(async () => /control API at http:\/\/127\.0\.0\.1:\d+/.test(workerOutput), 30_000, 'the worker to print its control API');
    const ran = await shell('echo "in $(pwd) as $(id -u)"');
    assert.equal(rcOf(ran), 0, workerOutput + out(ran));
    assert.match(out(ran), /^in \/work\/build as \d+$/m);
  });
  after(async () => {
    worker?.kill('SIGTERM');
    await new Promise((r) => { if (worker?.exitCode !== null || worker?.signalCode !== null) r(null); else worker.once('exit', r); });
    await master?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('the worker\'s HOME: its secret not readable by path, by $HOME, by search', async () => {
    const r = await shell(`
      echo read-home-ran
      for f in "$SECRET_FILE" "$SECRET_HOME/secret.txt" /root/secret.txt "$HOME/secret.txt"; do
        if cat "$f" 2>/dev/null | grep -q volunteer-secret; then echo "ESCAPED: read $f"; fi
      done
      if [ -n "$(find / \\( -path /proc -o -path /sys \\) -prune -o -name secret.txt -print 2>/dev/null)" ]; then echo "ESCAPED: found secret.txt"; fi
      echo "home: not readable"`, { SECRET_FILE: join(home, 'secret.txt'), SECRET_HOME: home });
    assert.match(out(r), /^read-home-ran$/m, 'the step ran');
    assert.match(out(r), /^home: not readable$/m);
    assert.equal(rcOf(r), 0);
  });

  test('writes outside the builder directory: refused or confined to the container; the host file unchanged', async () => {
    const before0 = statSync(victim);
    const r = await shell(`
      echo write-outside-ran
      for p in "$VICTIM" /work/../victim.txt "$BASE/../victim/victim.txt" /etc/passwd /bin/busybox /escape; do
        if (echo pwned > "$p") 2>/dev/null; then echo "wrote $p"; else echo "refused $p"; fi
      done
      ls /work/.. 2>/dev/null | grep -q victim && echo "ESCAPED: sees the victim directory"
      echo "write-outside: done"`, { VICTIM: victim, BASE: basedir });
    assert.match(out(r), /^write-outside-ran$/m, 'the step ran');
    assert.match(out(r), /^refused \/etc\/passwd$/m);
    assert.match(out(r), /^refused \/bin\/busybox$/m);
    assert.match(out(r), /^refused \/escape$/m);
    assert.match(out(r), /^write-outside: done$/m);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched\n');
    assert.equal(statSync(victim).mtimeMs, before0.mtimeMs);
    assert.equal(existsSync(join(basedir, 'victim.txt')) || existsSync(join(basedir, 'b', 'victim.txt')), false, 'nothing written above the builder directory');
  });

  test('the worker\'s control API and the master, on the host\'s loopback: unreachable', async () => {
    const controlPort = /control API at http:\/\/127\.0\.0\.1:(\d+)/.exec(workerOutput)![1]!;
    const masterPort = new URL(master.url).port;
    const r = await shell(`
      echo reach-ran
      for port in "$CONTROL" "$MASTER"; do
        for host in 127.0.0.1 localhost 10.0.2.2 10.88.0.1 host.containers.internal; do
          if wget -q -T 2 -O /dev/null "http://$host:$port/" 2>/dev/null; then echo "ESCAPED: reached $host:$port"; fi
          if nc -w 1 "$host" "$port" < /dev/null 2>/dev/null; then echo "ESCAPED: connected to $host:$port"; fi
        done
      done
      echo "reach: nothing answered"`, { CONTROL: controlPort, MASTER: masterPort });
    assert.match(out(r), /^reach-ran$/m, 'the step ran');
    assert.match(out(r), /^reach: nothing answered$/m);
    // The control API is there from the host: the attempt had something to reach.
    assert.ok((await fetch(`http://127.0.0.1:${controlPort}/`).catch(() => null)) !== null, 'the control API answers on the host');
  });

  test('network off: only lo, nothing outside answers, no new interfaces', async () => {
    const r = await shell(`
      echo network-ran
      echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"
      wget -q -T 3 -O /dev/null http://1.1.1.1/ 2>/dev/null && echo "ESCAPED: reached 1.1.1.1"
      nc -w 2 8.8.8.8 53 < /dev/null 2>/dev/null && echo "ESCAPED: reached 8.8.8.8:53"
      ip link add probe0 type dummy 2>/dev/null && echo "ESCAPED: created an interface"
      echo "network: closed"`);
    assert.match(out(r), /^network-ran$/m, 'the step ran');
    assert.match(out(r), /^interfaces: lo $/m);
    assert.match(out(r), /^network: closed$/m);
  });

  test('the worker\'s password and the control API secret: not in any process or environment the build sees', async () => {
    const control = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as { secret?: string };
    const r = await shell(`
      echo secrets-ran
      cat "$DATA/control.json" 2>/dev/null && echo "ESCAPED: control.json"
      # The password's first 20 characters, given in two halves so that no environment holds them whole.
      printf '%s%s' "$PW_A" "$PW_B" > /tmp/pw
      for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do
        if tr '\\0' ' ' < "$f" 2>/dev/null | grep -qf /tmp/pw; then echo "ESCAPED: the worker's password in $f"; fi
      done
      env | grep -qf /tmp/pw && echo "ESCAPED: the password in the environment"
      echo "processes seen: $(ls -d /proc/[0-9]* | wc -l)"
      echo "secrets: not readable"`, { DATA: dataDir, PW_A: password.slice(0, 10), PW_B: password.slice(10, 20) });
    assert.match(out(r), /^secrets-ran$/m, 'the step ran');
    assert.match(out(r), /^secrets: not readable$/m);
    if (control.secret) assert.ok(!JSON.stringify(r.updates).includes(control.secret), 'the control API secret is not in the log');
    const seen = Number(/processes seen: (\d+)/.exec(out(r))?.[1]);
    assert.ok(seen > 0 && seen < 10, `the build saw ${seen} processes`);
    // The worker itself does hold the password (it authenticated with it): the probe had a target.
    assert.ok(master.connections.length > 0);
  });
});
