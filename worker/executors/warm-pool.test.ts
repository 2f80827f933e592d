import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EnvironmentSpec, Limits } from '../../protocol/build-spec.js';
import { ensureBusyboxImage } from './busybox-image.js';
import { ContainerSandbox } from './container-sandbox.js';
import { ContainerExecutor, OWNER_LABEL } from './container.js';
import type { Sandbox, StepOutcome } from './executor.js';
import { CREATE_FLAGS } from './podman.js';
import { agentStamp, WARM_AGENT_LABEL, WARM_ROOT } from './warm-pool.js';

// Real podman, as root (warm sandboxes need bind mounts on the host). The owner id is this
// file's and this process's own, so other test files never see these containers.
const ownerId = `test-warm-${process.pid}`;
const logs: string[] = [];
const basesDir = mkdtempSync(join(tmpdir(), 'crowdbake-warm-bases-'));
const executor = new ContainerExecutor({ ownerId, basesDir, log: (l) => logs.push(l) });
const busybox: EnvironmentSpec = { base: 'busybox', setup: [] };
const dirs: string[] = [];
let seq = 0;

interface Build { sandbox: Sandbox; name: string; buildDir: string; workdir: string }

async function openBuild(limits: Limits = {}, environment = busybox, on = executor): Promise<Build> {
  const buildDir = mkdtempSync(join(tmpdir(), 'crowdbake-warm-test-'));
  dirs.push(buildDir);
  const workdir = join(buildDir, 'src');
  mkdirSync(workdir);
  const sandbox = await on.open({ id: `w${process.pid}-${++seq}`, workdir, buildDir, environment, limits, network: false });
  assert.ok(sandbox instanceof ContainerSandbox);
  return { sandbox, name: sandbox.name, buildDir, workdir };
}

async function run(sandbox: Sandbox, cmd: string): Promise<StepOutcome & { stdout: string }> {
  let stdout = '';
  const r = await sandbox.run({ run: cmd, env: {}, timeoutMs: 20_000, signal: new AbortController().signal, onOutput: (c, s) => { if (s === 'stdout') stdout += c.toString(); } });
  return { ...r, stdout };
}

function podmanNames(...filters: string[]): string[] {
  return execFileSync('podman', ['ps', '-a', ...filters.flatMap((f) => ['--filter', `label=${f}`]), '--format', '{{.Names}}'], { encoding: 'utf8' })
    .split('\n').filter(Boolean);
}

const warmContainers = (owner = ownerId): string[] => podmanNames(`${OWNER_LABEL}=${owner}`, WARM_AGENT_LABEL);

function mountPointsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** `podman rmi --force`, asked again while podman's own cleanup still holds a removed container's /dev/shm (as removeContainers does). */
async function rmiForce(ref: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('podman', ['rmi', '--force', ref], { stdio: ['ignore', 'ignore', 'pipe'] });
      return;
    } catch (e) {
      if (attempt >= 20 || !/resource busy/.test(String((e as { stderr?: Buffer }).stderr))) throw e;
      await sleep(50 * attempt);
    }
  }
}

function exists(name: string): boolean {
  try { execFileSync('podman', ['container', 'exists', name]); return true; } catch { return false; }
}

/** One build of the environment, so the pool knows it, then the warm one it made. */
async function warmed(limits: Limits = {}, environment = busybox): Promise<string> {
  const first = await openBuild(limits, environment);
  await first.sandbox.destroy();
  await executor.warm!.settled();
  const ready = executor.warm!.readyNames();
  assert.equal(ready.length, 1, `one warm sandbox after a build (log: ${logs.join(' | ')})`);
  return ready[0]!;
}

describe('warm sandboxes (real podman)', { skip: process.getuid?.() !== 0 ? 'warm sandboxes need root' : false }, () => {
  before(async () => {
    assert.deepEqual(await executor.isAvailable(), { ok: true });
    assert.equal(executor.mode, 'fast');
    assert.ok(executor.warm, 'as root on the fast path the executor has a warm pool');
    await executor.setWarm(true);
    await executor.prepare(busybox, () => {});
  });

  after(async () => {
    await executor.close();
    await executor.cleanupStale();
    for (const d of [...dirs, basesDir]) rmSync(d, { recursive: true, force: true });
    assert.deepEqual(warmContainers(), [], `close() removed every warm container (log: ${logs.join(' | ')})`);
    assert.equal(existsSync(join(WARM_ROOT, ownerId, executor.warm!.stamp)), false, 'close() removed the slots');
  });

  test('a build runs in a warm sandbox; once destroyed its processes, mounts and container are gone', async () => {
    const name = await warmed();
    const b = await openBuild();
    assert.equal(b.name, name, 'the build got the warm container');
    const r = await run(b.sandbox, 'pwd; echo made > made.txt; echo up > ../up.txt; ls /work; (i=0; while :; do i=$((i+1)); echo $i > tick; done) >/dev/null 2>&1 & while [ ! -e tick ]; do sleep 0.01; done');
    assert.equal(r.exitCode, 0, r.message ?? '');
    assert.equal(r.stdout, '/build/src\nmade.txt\n');
    assert.equal(readFileSync(join(b.workdir, 'made.txt'), 'utf8'), 'made\n', 'the checkout is the build\'s own directory');
    assert.equal(readFileSync(join(b.buildDir, 'up.txt'), 'utf8'), 'up\n', '.. is the build directory');
    const slot = join(WARM_ROOT, ownerId, executor.warm!.stamp);
    assert.ok(mountPointsUnder(slot).some((p) => p.endsWith('/b')), 'the build directory is bound onto the slot while it runs');
    await b.sandbox.destroy();
    // Resolved: no process of the container is left running its code and the build's directories are out of it.
    assert.deepEqual(mountPointsUnder(slot).filter((p) => p !== slot), [], 'nothing is mounted on the slots after destroy()');
    // The loop in the background (cwd in the build directory, which a lazy unmount would not take from it) writes no more.
    const tick = readFileSync(join(b.workdir, 'tick'), 'utf8');
    await sleep(300);
    assert.equal(readFileSync(join(b.workdir, 'tick'), 'utf8'), tick, 'nothing of the sandbox runs after destroy()');
    await executor.warm!.settled();
    assert.equal(exists(name), false, 'podman rm ran in the background');
    // The files written in the sandbox belong to the worker's user again.
    assert.equal(execFileSync('stat', ['-c', '%u', join(b.workdir, 'made.txt')], { encoding: 'utf8' }).trim(), String(process.getuid!()));
    assert.notEqual(executor.warm!.readyNames()[0], name, 'the pool refilled with a new container');
  });

  test('a build without a build directory (workdir at /work, a fresh directory name each time) takes the warm sandbox made behind the last one', async () => {
    // The workdir's name is not part of the shape here: each build's is new (mkdtemp, as the
    // agent's test-install stage and the bench make them), and one in the key made every build a
    // shape of its own, so no warm container was ever taken.
    const openWork = async () => {
      const workdir = mkdtempSync(join(tmpdir(), 'crowdbake-warm-work-'));
      dirs.push(workdir);
      const sandbox = await executor.open({ id: `w${process.pid}-${++seq}`, workdir, environment: busybox, limits: {}, network: false });
      assert.ok(sandbox instanceof ContainerSandbox);
      return sandbox;
    };
    const first = await openWork();
    await first.destroy();
    await executor.warm!.settled();
    const ready = executor.warm!.readyNames();
    assert.equal(ready.length, 1, `one warm sandbox after a build (log: ${logs.join(' | ')})`);
    const second = await openWork();
    assert.equal(second.name, ready[0], 'the second build got the warm container');
    const r = await run(second, 'pwd');
    assert.equal(r.stdout, '/work\n');
    await second.destroy();
    await executor.warm!.settled();
  });

  test('two builds never share a sandbox: nothing of the first is in the second', async () => {
    await warmed();
    const first = await openBuild();
    // The orphaned `sleep` shows as such in ps only once its fork has exec'd: wait for it (at most 5 s).
    const r1 = await run(first.sandbox, 'echo secret > /tmp/left; echo secret > /run/left; echo secret > /root/left; n=301; (sleep $n &) ; ' +
      'i=0; until ps -o args | grep -q "[s]leep 301" || [ $i -ge 100 ]; do i=$((i+1)); sleep 0.05; done; ps -o args | grep -c "[s]leep 301"');
    try {
      assert.equal(r1.exitCode, 0, `${r1.message ?? ''} ${r1.stdout}`);
      assert.equal(r1.stdout, '1\n', 'the check below sees a left-behind process');
    } finally {
      await first.sandbox.destroy();
    }
    await executor.warm!.settled();
    const second = await openBuild();
    assert.notEqual(second.name, first.name);
    assert.match(second.name, /^crowdbake-warm-/);
    const r2 = await run(second.sandbox, 'ls -A /tmp /run /root /work ..; ps -o args | grep -c "[s]leep 301" || true');
    assert.equal(r2.exitCode, 0, r2.message ?? '');
    assert.doesNotMatch(r2.stdout, /left/, 'no file of the first build');
    assert.match(r2.stdout, /\n0\n$/, 'no process of the first build');
    await second.sandbox.destroy();
  });

  test('the build\'s limits are applied to its warm sandbox, and a build with other limits does not take it', async () => {
    const limits = { memoryBytes: 200 * 1024 * 1024, pids: 77, cpus: 0.5 };
    const name = await warmed(limits);
    const b = await openBuild(limits);
    assert.equal(b.name, name);
    const r = await run(b.sandbox, 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max');
    assert.equal(r.exitCode, 0, r.message ?? '');
    assert.match(r.stdout, /^209715200\n77\n(50000|50000 100000)\n$/);
    await b.sandbox.destroy();
    await executor.warm!.settled();
    const warmNow = executor.warm!.readyNames()[0]!;
    const other = await openBuild({ memoryBytes: 100 * 1024 * 1024 });
    assert.equal(other.name.startsWith('crowdbake-warm-'), false, 'other limits: made on demand');
    assert.notEqual(other.name, warmNow);
    await other.sandbox.destroy();
  });

  test('the pool is empty while builds may not run, and refills when they may again', async () => {
    await warmed();
    assert.equal(warmContainers().length, 1);
    await executor.setWarm(false);
    assert.deepEqual(warmContainers(), [], 'no warm container while builds may not run');
    assert.deepEqual(executor.warm!.readyNames(), []);
    // A build that still runs (finishing before a pause) opens on demand, and none is made behind it.
    const b = await openBuild();
    assert.equal(b.name.startsWith('crowdbake-warm-'), false);
    await b.sandbox.destroy();
    await executor.warm!.settled();
    assert.deepEqual(warmContainers(), []);
    await executor.setWarm(true);
    await executor.warm!.settled();
    assert.equal(warmContainers().length, 1, 'refilled for the environment seen before');
  });

  test('a warm sandbox of an image that changed, or was removed, is not used', async () => {
    // An image of this test's own (a rootfs tarball with a file naming this process), so that
    // retagging and removing it touches no other test's containers.
    const image = await ensureBusyboxImage();
    const maker = `crowdbake-warm-test-maker-${process.pid}`;
    const podmanRun = (cmd: string, from: string): void => {
      execFileSync('podman', ['run', '--name', maker, ...CREATE_FLAGS, '--network', 'none', from, 'sh', '-c', cmd], { stdio: 'ignore' });
    };
    podmanRun(`echo ${process.pid} > /unique`, image);
    execFileSync('podman', ['export', '-o', join(basesDir, 'warm-test.tar'), maker]);
    execFileSync('podman', ['rm', maker], { stdio: 'ignore' });
    const env: EnvironmentSpec = { base: 'rootfs:warm-test.tar', setup: [] };
    let ref = '';
    try {
      await executor.prepare(env, (l) => { ref = /\((localhost\/[^)\s]+)\)/.exec(l)?.[1] ?? ref; });
      assert.match(ref, /^localhost\/crowdbake-rootfs:/);
      const old = await warmed({}, env);
      // The tag now names another image (one with a marker file); the warm container keeps the old one.
      podmanRun('echo v2 > /marker', ref);
      execFileSync('podman', ['commit', '--quiet', maker, ref], { stdio: 'ignore' });
      execFileSync('podman', ['rm', maker], { stdio: 'ignore' });
      await executor.prepare(env, () => {});
      const b = await openBuild({}, env);
      assert.notEqual(b.name, old, 'the warm container of the old image was not used');
      assert.equal((await run(b.sandbox, 'cat /marker')).stdout, 'v2\n');
      await b.sandbox.destroy();
      await executor.warm!.settled();
      assert.match(logs.join('\n'), new RegExp(`warm sandbox ${old} not used: its image [0-9a-f]{12} is no longer`));
      const fresh = executor.warm!.readyNames()[0]!;
      assert.ok(fresh, 'a warm container of the new image');
      // Removed (forced: podman then also removes the containers using it, the warm one too), and imported again.
      await rmiForce(ref);
      assert.equal(exists(fresh), false);
      await executor.prepare(env, () => {});
      const c = await openBuild({}, env);
      assert.notEqual(c.name, fresh);
      const r = await run(c.sandbox, 'test ! -e /marker && cat /unique');
      assert.equal(r.stdout, `${process.pid}\n`);
      await c.sandbox.destroy();
    } finally {
      await executor.warm!.settled();
      if (ref) await rmiForce(ref);
      await warmed();
    }
  });

  test('podman failing to make a warm sandbox: a clear error, and builds open on demand', async () => {
    // A stand-in podman in front of the real one that refuses to run warm containers only.
    const bin = mkdtempSync(join(tmpdir(), 'crowdbake-warm-podman-'));
    dirs.push(bin);
    const real = execFileSync('sh', ['-c', 'command -v podman'], { encoding: 'utf8' }).trim();
    writeFileSync(join(bin, 'podman'), `#!/bin/sh\ncase "$*" in run\\ *${WARM_AGENT_LABEL}*) echo "Error: no space left on device (injected)" >&2; exit 125;; esac\nexec ${real} "$@"\n`);
    chmodSync(join(bin, 'podman'), 0o755);
    const path = process.env.PATH;
    const failing = new ContainerExecutor({ ownerId: `${ownerId}-f`, log: (l) => logs.push(l) });
    process.env.PATH = `${bin}:${path}`;
    try {
      assert.deepEqual(await failing.isAvailable(), { ok: true });
      await failing.setWarm(true);
      await failing.prepare(busybox, () => {});
      for (let i = 0; i < 2; i++) {
        const b = await openBuild({}, busybox, failing);
        assert.equal(b.name.startsWith('crowdbake-warm-'), false);
        assert.equal((await run(b.sandbox, 'echo on-demand')).stdout, 'on-demand\n');
        await b.sandbox.destroy();
        await failing.warm!.settled();
      }
      process.env.PATH = path;
      assert.match(failing.warm!.lastError ?? '', /^could not make a warm sandbox for environment .*no space left on device \(injected\); builds open their sandbox on demand/);
      assert.ok(logs.some((l) => l === failing.warm!.lastError), 'the error is in the worker\'s log');
      assert.deepEqual(warmContainers(`${ownerId}-f`), [], 'the failed attempt left no container');
    } finally {
      process.env.PATH = path;
      await failing.close();
      await failing.cleanupStale();
    }
  });

  test('leftovers of a SIGKILLed agent are removed at the next start; another owner\'s and a live agent\'s are left', async () => {
    const owner = `${ownerId}-k`;
    const buildDir = mkdtempSync(join(tmpdir(), 'crowdbake-warm-test-'));
    dirs.push(buildDir);
    const module = new URL('./container.js', import.meta.url).href;
    const script = `
      import { mkdirSync, mkdtempSync } from 'node:fs';
      import { join } from 'node:path';
      const { ContainerExecutor } = await import(${JSON.stringify(module)});
      const e = new ContainerExecutor({ ownerId: ${JSON.stringify(owner)} });
      await e.isAvailable(); await e.setWarm(true);
      const env = { base: 'busybox', setup: [] };
      await e.prepare(env, () => {});
      const open = async (i) => {
        const b = mkdtempSync(join(${JSON.stringify(buildDir)}, 'b')); mkdirSync(join(b, 'src'));
        return e.open({ id: 'k' + process.pid + '-' + i, workdir: join(b, 'src'), buildDir: b, environment: env, limits: {}, network: false });
      };
      await (await open(1)).destroy();
      await e.warm.settled();
      const running = await open(2);
      await e.warm.settled();
      console.log(JSON.stringify({ running: running.name, warm: e.warm.readyNames(), stamp: e.warm.stamp }));
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`the agent stand-in exited (${code}) before it was ready`)));
    });
    const left = JSON.parse(line) as { running: string; warm: string[]; stamp: string };
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    assert.match(left.running, /^crowdbake-warm-/);
    assert.equal(left.warm.length, 1);
    const slots = join(WARM_ROOT, owner, left.stamp);
    assert.ok(mountPointsUnder(slots).length >= 2, 'the killed agent left its slot mounts');
    assert.deepEqual(warmContainers(owner).sort(), [left.running, ...left.warm].sort());

    const image = await ensureBusyboxImage();
    const foreign = `crowdbake-warm-test-foreign-${process.pid}`;
    const live = `crowdbake-warm-test-live-${process.pid}`;
    const sleeper = (name: string, labels: string[]): void => {
      execFileSync('podman', ['run', '-d', '--name', name, ...CREATE_FLAGS, '--network', 'none', ...labels.flatMap((l) => ['--label', l]), image, 'sleep', '600'], { stdio: 'ignore' });
    };
    try {
      // Another owner's, labelled with the dead agent's stamp: not ours.
      sleeper(foreign, [`${OWNER_LABEL}=other-${process.pid}`, `${WARM_AGENT_LABEL}=${left.stamp}`]);
      // Ours, but of an agent process that still runs (this one).
      sleeper(live, [`${OWNER_LABEL}=${owner}`, `${WARM_AGENT_LABEL}=${agentStamp(process.pid)}`]);
      const next = new ContainerExecutor({ ownerId: owner });
      assert.equal(await next.cleanupStale(), 2);
      assert.deepEqual(warmContainers(owner), [live]);
      assert.deepEqual(podmanNames(`${OWNER_LABEL}=other-${process.pid}`), [foreign]);
      assert.deepEqual(mountPointsUnder(slots), [], 'the killed agent\'s mounts are gone');
      assert.equal(existsSync(slots), false);
    } finally {
      execFileSync('podman', ['rm', '--force', '--time', '0', foreign, live], { stdio: 'ignore' });
      rmSync(join(WARM_ROOT, owner), { recursive: true, force: true });
    }
  });

  test('bad settings are refused with the setting named', () => {
    assert.throws(() => new ContainerExecutor({ ownerId, warmSandboxes: -1 }), /warm sandboxes \(warmSandboxes\) must be a whole number ≥ 0, not "-1"/);
    assert.throws(() => new ContainerExecutor({ ownerId, warmSandboxes: 1.5 }), /warmSandboxes\) must be a whole number/);
  });
});
