import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type { BuildView } from '../protocol/api.js';
import { FIRST_MAPPED_ID } from '../worker/executors/container.js';
import { CLI, cleanup, tempDir, testMaster, until, writeBuilder, type TestMaster } from './helpers/cluster.js';

// A build that tries to escape its container, one attempt per builder. Real master, a real
// worker process (with its own HOME holding a secret), real podman. Each attempt prints
// "ESCAPED: …" when it gets through; the assertions also check from the host's side.

const execFileP = promisify(execFile);

const home = tempDir('volunteer-home');
const secretText = `volunteer-secret-${randomBytes(8).toString('hex')}`;
const secretFile = join(home, 'secret.txt');
writeFileSync(secretFile, `${secretText}\n`, { mode: 0o600 });
const victimDir = tempDir('victim');
const victim = join(victimDir, 'victim.txt');
writeFileSync(victim, 'untouched\n');
chownSync(victim, 4242, 4242);
const victimBefore = statSync(victim);
const dataDir = tempDir('escape-worker');

const env = (vars: Record<string, string>): string => `{ ${Object.entries(vars).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(', ')} }`;
const builder = (steps: string, extra = ''): string =>
  `requires: { executor: container }\nenvironment: { base: busybox }\n${extra}steps:\n${steps}`;
const step = (name: string, vars: Record<string, string>, script: string, more = ''): string =>
  `  - name: ${name}\n    env: ${env(vars)}\n${more}    run: |\n${script.trim().split('\n').map((l) => `      ${l}`).join('\n')}\n`;

const BUILDERS: Record<string, string> = {
  'read-home': builder(step('read-home', { SECRET_FILE: secretFile, SECRET_HOME: home }, `
    for f in "$SECRET_FILE" "$SECRET_HOME/secret.txt" /root/secret.txt "$HOME/secret.txt"; do
      if cat "$f" 2>/dev/null | grep -q volunteer-secret; then echo "ESCAPED: read $f"; fi
    done
    if [ -n "$(find / \\( -path /proc -o -path /sys \\) -prune -o -name secret.txt -print 2>/dev/null)" ]; then echo "ESCAPED: found secret.txt"; fi
    ln -s "$SECRET_FILE" /work/secret-link.txt
    echo "home: not readable"
  `), 'artifacts: [secret-link.txt]\n'),
  'write-outside': builder(step('write-outside', { VICTIM: victim, DATA: dataDir }, `
    for p in "$VICTIM" /work/../victim.txt "$DATA/work/../victim.txt" /etc/passwd /bin/busybox /escape; do
      if (echo pwned > "$p") 2>/dev/null; then echo "wrote $p"; else echo "refused $p"; fi
    done
    ln -s "$VICTIM" /work/victim-link
    mkdir -p /work/sub && ln -s "$(dirname "$VICTIM")" /work/sub/dirlink
    echo "write-outside: done"
  `)),
  secrets: builder(step('secrets', { DATA: dataDir }, `
    cat "$DATA/control.json" 2>/dev/null && echo "ESCAPED: control.json"
    for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do
      if tr '\\0' ' ' < "$f" 2>/dev/null | grep -q 'cbw1\\.'; then echo "ESCAPED: a worker token in $f"; fi
    done
    env | grep -q 'cbw1\\.' && echo "ESCAPED: a worker token in the environment"
    echo "processes seen: $(ls -d /proc/[0-9]* | wc -l)"
    echo "secrets: not readable"
  `)),
  network: builder(step('network', {}, `
    echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')"
    wget -q -T 3 -O /dev/null http://1.1.1.1/ 2>/dev/null && echo "ESCAPED: reached 1.1.1.1"
    nc -w 2 8.8.8.8 53 < /dev/null 2>/dev/null && echo "ESCAPED: reached 8.8.8.8:53"
    ip link add probe0 type dummy 2>/dev/null && echo "ESCAPED: created an interface"
    ip link set lo down 2>/dev/null && echo "ESCAPED: took lo down"
    echo "network: closed"
  `)),
  hog: builder(step('hog', {}, 'dd if=/dev/zero of=/dev/null bs=200M count=1; echo survived'), 'limits: { memory: 64m }\n'),
  fill: builder(step('fill', {}, `
    (dd if=/dev/zero of=/fill bs=1M count=1) 2>&1 | grep -q 'Read-only' && echo "root filesystem: read-only"
    dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>/dev/null; echo "tmp holds $(du -m /tmp/fill | cut -f1) MiB"; rm -f /tmp/fill
    dd if=/dev/zero of=/work/fill bs=1M count=200; echo "dd exit $?"
    echo "work holds $(du -m /work/fill | cut -f1) MiB"
  `), 'limits: { disk: 64m, memory: 256m }\n'),
  // The step's own shell forks once, before the bomb is lit, and then runs only builtins (a
  // shell that cannot fork gives up): the bomb goes off in that one child when told through a
  // FIFO. Lit from the step's shell itself, \`bomb | bomb &\` made it fork twice, and under load
  // the first child's offspring could take every pid before the second fork (CI run 3 at
  // 4c8bc88: the shell gave up, "bomb-started" never came). Then it waits on a FIFO nobody
  // writes (again when a signal interrupts the open) until the time limit ends it.
  bomb: builder(step('bomb', {}, `
    mkfifo /tmp/never /tmp/go
    bomb() { bomb | bomb & }
    (read x < /tmp/go; bomb) 2>/dev/null &
    echo go > /tmp/go
    echo bomb-started
    while :; do read x < /tmp/never; done 2>/dev/null
  `, '    timeout: 8s\n'), 'limits: { pids: 64 }\n'),
  neighbour: builder(step('neighbour', {}, `
    echo mine > /work/neighbour-mark
    echo neighbour-up
    sleep 19.31337
  `)),
  peek: builder(step('peek', { DATA: dataDir }, `
    echo "19.$((31336 + 1))" > /tmp/pattern
    for f in /proc/[0-9]*/cmdline; do
      if tr '\\0' ' ' < "$f" 2>/dev/null | grep -qf /tmp/pattern; then echo "ESCAPED: saw the other build's process $f"; fi
    done
    if [ -n "$(find / \\( -path /proc -o -path /sys \\) -prune -o -name neighbour-mark -print 2>/dev/null)" ]; then echo "ESCAPED: found the other build's file"; fi
    ls "$DATA/work" 2>/dev/null && echo "ESCAPED: listed the worker's workdirs"
    echo "peek: alone"
  `)),
};

let m: TestMaster;
let worker: ChildProcess;
let workerOutput = '';

const logOf = (id: number): Promise<string> => fetch(`${m.url}/api/v1/builds/${id}/log`).then((r) => r.text());
async function build(name: string, timeoutMs = 60_000): Promise<{ build: BuildView; log: string }> {
  const b = await m.waitFinished(await m.force(name), timeoutMs);
  return { build: b, log: await logOf(b.id) };
}
function assertHeld(log: string): void {
  assert.doesNotMatch(log, /^ESCAPED/m, log);
  assert.ok(!log.includes(secretText), 'the volunteer\'s secret is in the log');
}
/** Host pids of the main processes of the worker's running containers (of one build, when given). */
const containerPids = async (buildId?: number): Promise<number[]> => {
  const filter = buildId === undefined ? [] : ['--filter', `name=crowdbake-b${buildId}-a`];
  const { stdout } = await execFileP('podman', ['ps', '--filter', 'label=crowdbake.owner=w-escape', ...filter, '--format', '{{.Pid}}']);
  return stdout.split('\n').map(Number).filter((n) => n > 0 && existsSync(`/proc/${n}/cgroup`));
};

describe('sandbox escape attempts on the container executor (real podman)', { timeout: 180_000 }, () => {
  before(async () => {
    m = await testMaster(BUILDERS);
    const token = await m.token('escape');
    worker = spawn(process.execPath, [CLI, 'worker', '--master', m.url, '--token', token, '--data', dataDir, '--when', 'always',
      '--executor', 'container', '--builds', '2', '--idle-source', 'none'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: home } });
    worker.stdout!.on('data', (c: Buffer) => { workerOutput += c.toString(); });
    worker.stderr!.on('data', (c: Buffer) => { workerOutput += c.toString(); });
    await until('the worker to connect', async () => (await m.get<{ connected: boolean }[]>('/api/v1/workers')).some((w) => w.connected), 30_000);
  });
  after(async () => {
    worker?.kill('SIGTERM');
    await new Promise((r) => { if (worker?.exitCode !== null) r(null); else worker.once('exit', r); });
    await m?.close();
    cleanup(home, victimDir, dataDir);
  });

  test('the volunteer\'s home: not visible, not by search, not through an artifact symlink', async () => {
    const { build: b, log } = await build('read-home');
    assertHeld(log);
    assert.match(log, /^home: not readable$/m, log);
    assert.equal(b.result, 'success', log);
    // The symlink is not uploaded as an artifact, so the worker did not follow it either.
    assert.deepEqual(await m.get(`/api/v1/builds/${b.id}/artifacts`), []);
  });

  test('writes outside /work: refused or confined to the container; the host file is unchanged', async () => {
    const { build: b, log } = await build('write-outside');
    assert.equal(b.result, 'success', log);
    assert.match(log, /^refused \/etc\/passwd$/m);
    assert.match(log, /^refused \/bin\/busybox$/m);
    assert.match(log, /^refused \/escape$/m);
    const after = statSync(victim);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched\n');
    assert.deepEqual([after.uid, after.gid, after.mtimeMs, after.mode], [victimBefore.uid, victimBefore.gid, victimBefore.mtimeMs, victimBefore.mode],
      'the workdir\'s symlinks to the host file were not followed when the worker took the workdir back');
  });

  test('the agent\'s secrets: control.json and the worker token are out of reach', async () => {
    const control = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as { secret: string };
    const { build: b, log } = await build('secrets');
    assertHeld(log);
    assert.equal(b.result, 'success', log);
    assert.match(log, /^secrets: not readable$/m);
    assert.ok(!log.includes(control.secret), 'the control API secret is in the log');
    // Only the container's own processes: its init, the agent, the step's shell and its pipes.
    const seen = Number(/processes seen: (\d+)/.exec(log)?.[1]);
    assert.ok(seen > 0 && seen < 10, `the build saw ${seen} processes`);
  });

  test('the worker\'s control API and the master, on the host\'s loopback: unreachable', async () => {
    const control = JSON.parse(readFileSync(join(dataDir, 'control.json'), 'utf8')) as { url: string };
    const controlPort = new URL(control.url).port;
    const masterPort = new URL(m.url).port;
    writeBuilder(m.configDir, 'reach', builder(step('reach', { CONTROL: controlPort, MASTER: masterPort }, `
      for port in "$CONTROL" "$MASTER"; do
        for host in 127.0.0.1 localhost 10.0.2.2 10.88.0.1 host.containers.internal; do
          if wget -q -T 2 -O /dev/null "http://$host:$port/" 2>/dev/null; then echo "ESCAPED: reached $host:$port"; fi
          if nc -w 1 "$host" "$port" < /dev/null 2>/dev/null; then echo "ESCAPED: connected to $host:$port"; fi
        done
      done
      echo "reach: nothing answered"
    `)));
    await until('the master to load the reach builder', async () =>
      (await m.get<{ name: string }[]>('/api/v1/builders')).some((x) => x.name === 'reach'), 10_000);
    const { build: b, log } = await build('reach');
    assertHeld(log);
    assert.equal(b.result, 'success', log);
    assert.match(log, /^reach: nothing answered$/m);
  });

  test('network off: only lo, nothing outside answers, no new interfaces', async () => {
    const { build: b, log } = await build('network');
    assertHeld(log);
    assert.equal(b.result, 'success', log);
    assert.match(log, /^interfaces: lo $/m);
  });

  test('eating memory: the step fails naming the memory limit', async () => {
    const { build: b, log } = await build('hog');
    assert.equal(b.result, 'failure', log);
    assert.match(b.message ?? '', /memory limit of 64 MiB/);
  });

  test('filling the disk: the root is read-only, /tmp and /work hold at most the limit, the step fails naming it, nothing is left', async () => {
    const { build: b, log } = await build('fill');
    assert.equal(b.result, 'failure', log);
    assert.match(log, /^root filesystem: read-only$/m);
    const tmp = Number(/tmp holds (\d+) MiB/.exec(log)?.[1]);
    assert.ok(tmp <= 64, `/tmp held ${tmp} MiB under a limit of 64 MiB`);
    const work = Number(/work holds (\d+) MiB/.exec(log)?.[1]);
    assert.ok(work > 0 && work <= 64, `/work held ${work} MiB under a limit of 64 MiB`);
    assert.match(log, /No space left on device/);
    assert.match(b.message ?? '', /disk limit of 64 MiB/);
    // The image and its mount are gone with the build (the directory goes right after the
    // worker reports the end).
    assert.ok(!readdirSync(join(dataDir, 'work')).some((f) => f.endsWith('.img')), 'the disk image is gone');
    await until('the workdir to be removed', () => readdirSync(join(dataDir, 'work')).length === 0, 10_000);
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(join(dataDir, 'work')), 'a workdir is still mounted');
  });

  test('a fork bomb: the pids limit holds and the host stays responsive', async () => {
    const sample = async (): Promise<number> => {
      const t0 = performance.now();
      await execFileP('/bin/true');
      return performance.now() - t0;
    };
    const baseline: number[] = [];
    for (let i = 0; i < 10; i++) baseline.push(await sample());
    const id = await m.force('bomb');
    await until('the bomb to start', async () => (await logOf(id)).includes('bomb-started'), 60_000);
    const pid = await until('the bomb\'s container', () => containerPids(id).then((p) => p[0]), 10_000)
      .catch(async (e: Error) => { throw new Error(`${e.message}\n${await logOf(id)}`); });
    const pidsFile = pidsCurrentFile(pid);
    assert.ok(pidsFile, 'the container\'s pids cgroup was found');
    // How often the cgroup refused a fork at its limit (`max N`, v1 and v2 alike).
    const eventsFile = join(dirname(pidsFile), 'pids.events');
    const refused = (): number => { try { return Number(/^max (\d+)$/m.exec(readFileSync(eventsFile, 'utf8'))?.[1] ?? 0); } catch { return -1; } };
    const during: number[] = [];
    const pidSamples: number[] = [];
    let refusedForks = 0;
    const end = Date.now() + 4000;
    while (Date.now() < end) {
      during.push(await sample());
      // Gone once the step's time limit killed the container.
      const pids = readNumber(pidsFile);
      if (pids > 0) pidSamples.push(pids);
      refusedForks = Math.max(refusedForks, refused());
      await new Promise((r) => setTimeout(r, 50));
    }
    const b = await m.waitFinished(id, 30_000);
    const maxPids = Math.max(0, ...pidSamples);
    const median = (xs: number[]) => [...xs].sort((a, c) => a - c)[Math.floor(xs.length / 2)]!;
    console.log(`fork bomb: host /bin/true median ${median(baseline).toFixed(1)} ms before, ${median(during).toFixed(1)} ms during `
      + `(max ${Math.max(...during).toFixed(1)} ms, ${during.length} samples); container pids at most ${maxPids} of 64 when sampled, ${refusedForks} forks refused at the limit`);
    const log = await logOf(id);
    assert.equal(b.result, 'failure', log);
    assert.match(b.message ?? '', /time limit of 8s/, log);
    assert.ok(pidSamples.length >= 5, `the container's pids were read ${pidSamples.length} times while the bomb ran`);
    assert.ok(maxPids <= 64, `${maxPids} processes under a cap of 64`);
    // The bomb reached the cap: busybox's shell gives up when a fork fails, so the storm dies
    // out within a second or two and a sample may miss it; the cgroup's own count does not.
    assert.ok(refusedForks > 0, `the pids limit refused no fork (pids.events: ${refusedForks}): the bomb did not go off`);
    // The host stays usable: half the host's commands start within 500 ms (about 5 ms here) while
    // the bomb runs. The slowest one is printed above, not bounded — a single sample is up to
    // the machine's other load (about 1 s was seen with another test suite running alongside).
    assert.ok(median(during) < 500, `host command latency during the bomb: median ${median(during)} ms`);
  });

  test('other builds: a concurrent build\'s processes and files are invisible; build files are not root-owned on the host', async () => {
    const neighbour = await m.force('neighbour');
    await until('the neighbour to run', async () => (await logOf(neighbour)).includes('neighbour-up'), 30_000);
    // From the host: the neighbour's file and processes belong to an unprivileged mapped uid.
    const mark = readdirSync(join(dataDir, 'work')).map((d) => join(dataDir, 'work', d, 'src', 'neighbour-mark')).find((p) => existsSync(p));
    assert.ok(mark, 'the neighbour\'s workdir holds its file');
    assert.ok(statSync(mark).uid >= FIRST_MAPPED_ID, `the build's file is owned by uid ${statSync(mark).uid} on the host`);
    for (const pid of await containerPids()) {
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      assert.ok(uid >= FIRST_MAPPED_ID, `container process ${pid} runs as uid ${uid} on the host`);
    }
    const { build: b, log } = await build('peek');
    assertHeld(log);
    assert.equal(b.result, 'success', log);
    assert.match(log, /^peek: alone$/m);
    await fetch(`${m.url}/api/v1/builds/${neighbour}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${m.adminToken}` } });
    await m.waitFinished(neighbour, 30_000);
    assert.doesNotMatch(workerOutput, /cleanup failed/);
  });
});

function readNumber(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch {
    return NaN;
  }
}

/** The pids cgroup's pids.current of a process (cgroup v1 or v2), or null when not found. */
function pidsCurrentFile(pid: number): string | null {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers === undefined || path === undefined) continue;
    const file = controllers === '' ? `/sys/fs/cgroup${path}/pids.current`
      : controllers.split(',').includes('pids') ? `/sys/fs/cgroup/pids${path}/pids.current` : null;
    if (file && existsSync(file)) return file;
  }
  return null;
}
