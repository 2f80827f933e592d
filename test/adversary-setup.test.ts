import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EnvironmentSpec, Limits } from '../protocol/build-spec.js';
import { ContainerExecutor, FIRST_MAPPED_ID } from '../worker/executors/container.js';
import { FreezeGate } from '../worker/freeze-gate.js';
import { startWorker } from '../worker/agent.js';
import { testMaster, whenSteady } from './helpers/cluster.js';

/**
 * Malicious builder files, `environment.setup` edition: a setup line is the builder's code and
 * runs in the same sandbox as a build step (worker/executors/environments/setup-layer.ts).
 * Each test first shows the line ran (its output is in the build log), then that what it tried
 * failed. Real podman, busybox base; run as root so the user namespace applies.
 */

const nonce = `${process.pid}-${Date.now()}`;
const ownerId = `test-advsetup-${process.pid}`;
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-advsetup-'));
  dirs.push(d);
  return d;
}
const executor = new ContainerExecutor({ ownerId, cacheDir: tempDir() });
const made = new Set<string>();
const asRoot = process.getuid?.() === 0;

function recorder(): { lines: string[]; progress: (line: string) => void } {
  const lines: string[] = [];
  return { lines, progress: (line) => { lines.push(line); for (const t of line.match(/localhost\/crowdbake-env:[0-9a-f]{16}/g) ?? []) made.add(t); } };
}

async function prepare(environment: EnvironmentSpec, limits: Limits = {}, gate?: FreezeGate): Promise<string[]> {
  const r = recorder();
  await executor.prepare(environment, r.progress, { limits, gate, signal: new AbortController().signal });
  return r.lines;
}

async function prepareFails(environment: EnvironmentSpec, limits: Limits): Promise<{ lines: string[]; error: string }> {
  const r = recorder();
  try {
    await executor.prepare(environment, r.progress, { limits, signal: new AbortController().signal });
  } catch (e) {
    return { lines: r.lines, error: e instanceof Error ? e.message : String(e) };
  }
  assert.fail(`the setup line succeeded:\n${r.lines.join('\n')}`);
}

async function runIn(environment: EnvironmentSpec, cmd: string, network = false): Promise<string> {
  const sandbox = await executor.open({ id: `as${process.pid}-${made.size}-${Date.now() % 100000}`, workdir: tempDir(), environment, limits: {}, network });
  try {
    let stdout = '';
    const r = await sandbox.run({
      run: cmd, env: {}, timeoutMs: 20_000, signal: new AbortController().signal,
      onOutput: (chunk, stream) => { if (stream === 'stdout') stdout += chunk.toString(); },
    });
    assert.equal(r.exitCode, 0, stdout);
    return stdout;
  } finally {
    await sandbox.destroy();
  }
}

const has = (lines: string[], re: RegExp): boolean => lines.some((l) => re.test(l));

// After every suite of this file: the layers the tests made, their containers and directories.
after(async () => {
  if (asRoot) await executor.cleanupStale();
  for (const tag of [...made].reverse()) spawnSync('podman', ['rmi', tag], { stdio: 'ignore' });
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 3 });
});

describe('adversary: malicious setup lines run in the build sandbox (real podman)', { skip: !asRoot && 'needs root (the user namespace is for rootful podman)' }, () => {
  test('(a) a setup line is not host root: its uids are a mapped range, and the layer it writes is owned as written for later (mapped) steps', async () => {
    const environment: EnvironmentSpec = {
      base: 'busybox',
      setup: [`echo ran-${nonce}; echo "uidmap: $(cat /proc/self/uid_map)"; echo "gidmap: $(cat /proc/self/gid_map)"; `
        + 'echo mine > /setup-root; echo theirs > /setup-1000; chown 1000:1001 /setup-1000; mkdir -p /home/u; chown 1000 /home/u'],
    };
    const lines = await prepare(environment);
    assert.ok(has(lines, new RegExp(`^ran-${nonce}$`)), lines.join('\n'));
    for (const which of ['uidmap', 'gidmap']) {
      const m = new RegExp(`^${which}: +0 +(\\d+) +(\\d+)$`).exec(lines.find((l) => l.startsWith(`${which}:`)) ?? '');
      assert.ok(m, `no ${which} line in:\n${lines.join('\n')}`);
      assert.ok(Number(m[1]) >= FIRST_MAPPED_ID, `setup root is host ${which.slice(0, 3)} ${m[1]}`);
      assert.equal(Number(m[2]), 65536);
    }
    // A later step runs mapped to another random range and sees the files with the ids setup gave them.
    const out = await runIn(environment, 'stat -c "%n %u %g" /setup-root /setup-1000 /home/u; echo x > /work/ok; id -u');
    assert.deepEqual(out.trim().split('\n'), ['/setup-root 0 0', '/setup-1000 1000 1001', '/home/u 1000 0', '0']);
  });

  test('(b) a setup line has only the steps\' capabilities and no-new-privileges: mknod, mount and ip link add fail', async () => {
    const environment: EnvironmentSpec = {
      base: 'busybox',
      setup: [`echo ran-${nonce}; grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; `
        + 'mknod /dev/crowdbake-mem c 1 1 2>/dev/null && echo mknod-worked || echo mknod-refused; '
        + 'mkdir -p /mnt/t; mount -t tmpfs none /mnt/t 2>/dev/null && echo mount-worked || echo mount-refused; '
        + 'ip link add crowdbake0 type dummy 2>/dev/null && echo iplink-worked || echo iplink-refused'],
    };
    const lines = await prepare(environment);
    assert.ok(has(lines, new RegExp(`^ran-${nonce}$`)), lines.join('\n'));
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID: bits 0 1 3 4 5 6 7.
    assert.ok(has(lines, /^CapEff:\s+00000000000000fb$/), lines.join('\n'));
    assert.ok(has(lines, /^CapBnd:\s+00000000000000fb$/), lines.join('\n'));
    assert.ok(has(lines, /^NoNewPrivs:\s+1$/), lines.join('\n'));
    for (const op of ['mknod', 'mount', 'iplink']) assert.ok(has(lines, new RegExp(`^${op}-refused$`)), lines.join('\n'));
    assert.ok(!has(lines, /-worked$/), lines.join('\n'));
  });

  test('(c) a memory hog in setup is killed at the memory limit, and the error names the limit', async () => {
    const { lines, error } = await prepareFails({
      base: 'busybox', setup: [`echo hog-${nonce}; dd if=/dev/zero of=/dev/null bs=300M count=1`],
    }, { memoryBytes: 64 * 1024 ** 2 });
    assert.ok(has(lines, new RegExp(`^hog-${nonce}$`)), lines.join('\n'));
    assert.ok(has(lines, /limits: memory 64 MiB, pids 1024/), lines.join('\n'));
    assert.match(error, /^setup 1\/1 ".*" (ran out of memory|was killed \(exit 137, SIGKILL\)).* the memory limit of 64 MiB; nothing was cached for it$/);
  });

  test('(c) a fork bomb in setup stops at the pids limit, and the error names the limit', async () => {
    const { lines, error } = await prepareFails({
      base: 'busybox', setup: [`echo bomb-${nonce}; i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done; echo all-forked`],
    }, { pids: 32 });
    assert.ok(has(lines, new RegExp(`^bomb-${nonce}$`)), lines.join('\n'));
    assert.ok(!has(lines, /^all-forked$/), lines.join('\n'));
    assert.match(error, /could not start a process: setup lines run with the pids limit of 32\); nothing was cached for it$/);
  });

  test('(c) a setup line that never ends is killed at the time limit (limits.time)', async () => {
    const { lines, error } = await prepareFails({ base: 'busybox', setup: [`echo sleeper-${nonce}; sleep 600`] }, { timeMs: 3000 });
    assert.ok(has(lines, new RegExp(`^sleeper-${nonce}$`)), lines.join('\n'));
    assert.match(error, /did not finish within its time limit of 3 s; nothing was cached for it$/);
  });

  test('(d) network: setup lines have it (for packages) and the log says so; the build\'s steps under network: false do not', async () => {
    const environment: EnvironmentSpec = {
      base: 'busybox', setup: [`echo net-${nonce}; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sed 's/^/iface /'`],
    };
    const lines = await prepare(environment);
    assert.ok(has(lines, new RegExp(`^net-${nonce}$`)), lines.join('\n'));
    assert.ok(has(lines, /^setup 1\/1 runs with network \(package installation; build steps follow the builder's `network`\); limits: /), lines.join('\n'));
    assert.ok(has(lines, /^iface (?!lo$)\w+$/), `setup had no network interface besides lo:\n${lines.join('\n')}`);
    // Not the host's network namespace: the host's interfaces are not there.
    const hostIfaces = execFileSync('sh', ['-c', "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"], { encoding: 'utf8' }).trim().split('\n');
    const setupIfaces = lines.filter((l) => l.startsWith('iface ')).map((l) => l.slice(6));
    assert.notDeepEqual(setupIfaces.sort(), hostIfaces.sort());
    const step = await runIn(environment, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", false);
    assert.deepEqual(step.trim().split('\n'), ['lo']);
  });

  test('(e) a running setup line is frozen with the build (podman pause) and thawed after', async () => {
    const gate = new FreezeGate();
    const lines: string[] = [];
    const ticks = (): number => lines.filter((l) => /^tick \d+$/.test(l)).length;
    const environment: EnvironmentSpec = {
      base: 'busybox', setup: [`echo ticker-${nonce}; i=0; while [ $i -lt 60 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done`],
    };
    const done = executor.prepare(environment, (l) => { lines.push(l); for (const t of l.match(/localhost\/crowdbake-env:[0-9a-f]{16}/g) ?? []) made.add(t); },
      { limits: {}, gate, signal: new AbortController().signal });
    try {
      while (ticks() < 3) await sleep(50);
      assert.ok(has(lines, new RegExp(`^ticker-${nonce}$`)));
      await gate.freeze();
      const states = execFileSync('podman', ['ps', '-a', '--filter', `label=crowdbake.owner=${ownerId}`, '--format', '{{.Names}} {{.State}}'], { encoding: 'utf8' });
      assert.match(states, /crowdbake-setup-\S+ paused/i);
      // Output already in the pipe when the freezer hit lands first.
      const frozenAt = await whenSteady('the frozen setup line\'s output', async () => ticks());
      await sleep(1500);
      assert.equal(ticks(), frozenAt, 'the setup line kept printing while frozen');
      assert.ok(frozenAt < 60);
    } finally {
      await gate.thaw();
    }
    await done;
    assert.equal(ticks(), 60);
  });
});

describe('adversary: setup lines wait for the volunteer', { skip: !asRoot && 'needs root' }, () => {
  test('a setup line does not start while the build is frozen, and starts at thaw', async () => {
    const gate = new FreezeGate();
    await gate.freeze();
    const lines: string[] = [];
    const done = executor.prepare({ base: 'busybox', setup: [`echo started-${nonce}`] }, (l) => {
      lines.push(l);
      for (const t of l.match(/localhost\/crowdbake-env:[0-9a-f]{16}/g) ?? []) made.add(t);
    }, { limits: {}, gate, signal: new AbortController().signal });
    try {
      while (!lines.some((l) => l.startsWith('setup 1/1 runs with network'))) await sleep(50);
      await sleep(1500);
      assert.ok(!lines.includes(`started-${nonce}`), 'the setup line ran while frozen');
    } finally {
      await gate.thaw();
    }
    await done;
    assert.ok(lines.includes(`started-${nonce}`), lines.join('\n'));
  });
});

describe('adversary: a malicious builder file\'s setup line, through a real master and worker', { skip: !asRoot && 'needs root' }, () => {
  test('the builder\'s limits reach setup: a memory hog in setup fails the build naming the limit; the log says setup has network', async (t) => {
    const m = await testMaster({
      hog: `
requires: { executor: container }
environment:
  base: busybox
  setup: ["echo hog-${nonce}; dd if=/dev/zero of=/dev/null bs=300M count=1"]
steps:
  - { name: never, run: "echo step ran" }
limits: { time: 2m, memory: 64m }
`,
    });
    const workDir = tempDir();
    const worker = await startWorker({ preferences: { when: 'always' }, idleSource: 'none', master: m.url, token: await m.token('w1'), dataDir: workDir, executor: 'container', labels: [], log: () => undefined });
    t.after(async () => { await worker.close(); await m.close(); });
    const build = await m.waitFinished(await m.force('hog'), 90_000);
    const log = await (await fetch(`${m.url}/api/v1/builds/${build.id}/log`)).text();
    assert.match(log, new RegExp(`^hog-${nonce}$`, 'm'));
    assert.match(log, /^setup 1\/1 runs with network \(package installation; build steps follow the builder's `network`\); limits: memory 64 MiB, pids 1024, time 120 s$/m);
    assert.equal(build.result, 'error', log);
    assert.match(build.message ?? '', /the memory limit of 64 MiB; nothing was cached for it/);
    assert.doesNotMatch(log, /^step ran$/m);
  });

  test('cancelling the build kills a running setup line and caches nothing', async () => {
    const ac = new AbortController();
    const lines: string[] = [];
    const done = executor.prepare({ base: 'busybox', setup: [`echo long-${nonce}; sleep 600`] }, (l) => lines.push(l), { limits: {}, signal: ac.signal });
    while (!lines.includes(`long-${nonce}`)) await sleep(50);
    ac.abort();
    await assert.rejects(done, /^Error: setup 1\/1 ".*" was cancelled; nothing was cached for it$/);
    const left = execFileSync('podman', ['ps', '-a', '-q', '--filter', `label=crowdbake.owner=${ownerId}`], { encoding: 'utf8' }).trim();
    assert.equal(left, '');
  });
});
