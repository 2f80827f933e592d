import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import { ContainerSandbox, PodmanOps } from '../container-sandbox.js';
import { ContainerExecutor } from '../container.js';
import type { Sandbox, StepOutcome, StepRequest } from '../executor.js';
import { FastOps } from './fast-ops.js';

// The fast container path against the real podman: what it does differently from the plain
// path (an in-container agent, cgroup freeze/kill) and when it falls back.
const ownerId = `test-fast-${process.pid}`;
const executor = new ContainerExecutor({ ownerId });
const busybox: EnvironmentSpec = { base: 'busybox', setup: [] };
const dirs: string[] = [];
let seq = 0;

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-ftest-'));
  dirs.push(d);
  return d;
}

async function open(environment = busybox, limits = {}): Promise<Sandbox> {
  return executor.open({ id: `f${process.pid}-${++seq}`, workdir: tempDir(), environment, limits, network: false });
}

interface Ran extends StepOutcome { stdout: string; stderr: string; ms: number }

async function run(sandbox: Sandbox, cmd: string | string[], extra: Partial<StepRequest> = {}): Promise<Ran> {
  const out = { stdout: '', stderr: '' };
  const started = performance.now();
  const outcome = await sandbox.run({
    run: cmd, env: {}, timeoutMs: 20_000, signal: new AbortController().signal,
    onOutput: (chunk, stream) => { out[stream] += chunk.toString('latin1'); },
    ...extra,
  });
  return { ...outcome, ...out, ms: performance.now() - started };
}

function fastOps(sandbox: Sandbox): FastOps {
  assert.ok(sandbox instanceof ContainerSandbox);
  assert.ok(sandbox.ops instanceof FastOps, 'the sandbox does not use the fast path');
  return sandbox.ops;
}

describe('container fast path (real podman)', () => {
  before(async () => {
    assert.deepEqual(await executor.isAvailable(), { ok: true });
    assert.equal(executor.mode, 'fast');
    await executor.prepare(busybox, () => {});
  });
  after(async () => {
    await executor.cleanupStale();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('env values and argv words with quotes, newlines and $ arrive exactly', async () => {
    const sandbox = await open();
    try {
      const tricky = "it's \"q\" $HOME `id`\nsecond line\\n";
      const r = await run(sandbox, ['/bin/sh', '-c', 'printf "[%s]" "$T" "$@"', 'sh', tricky, ''], { env: { T: tricky } });
      assert.deepEqual([r.stdout, r.exitCode], [`[${tricky}][${tricky}][]`, 0]);
      const missing = await run(sandbox, ['no-such-command']);
      assert.equal(missing.exitCode, 127);
    } finally {
      await sandbox.destroy();
    }
  });

  test('megabytes of output to a slow consumer arrive whole, per stream, with steps cut exactly', async () => {
    const sandbox = await open();
    try {
      let stdout = 0;
      let stderr = 0;
      let calls = 0;
      const r = await sandbox.run({
        run: "head -c 4000000 /dev/zero | tr '\\0' o; head -c 1000000 /dev/zero | tr '\\0' e >&2", env: {}, timeoutMs: 60_000,
        signal: new AbortController().signal,
        onOutput: async (chunk, stream) => {
          if (stream === 'stdout') stdout += chunk.length; else stderr += chunk.length;
          if (++calls % 20 === 0) await sleep(1);
        },
      });
      assert.deepEqual([r.exitCode, stdout, stderr], [0, 4_000_000, 1_000_000]);
      const next = await run(sandbox, 'printf no-newline');
      assert.deepEqual([next.stdout, next.stderr, next.exitCode], ['no-newline', '', 0]);
    } finally {
      await sandbox.destroy();
    }
  });

  test('what a step leaves running cannot end the next step early; it is killed with the container', async () => {
    const sandbox = await open();
    try {
      const first = await run(sandbox, '(sleep 0.3; echo late) & echo first');
      assert.deepEqual([first.stdout, first.exitCode], ['first\n', 0]);
      const second = await run(sandbox, 'sleep 0.6; echo second; exit 4');
      assert.deepEqual([second.stdout, second.exitCode], ['late\nsecond\n', 4]);
    } finally {
      await sandbox.destroy();
    }
  });

  test('freeze and thaw go through the cgroup freezer', async () => {
    const sandbox = await open();
    try {
      const ops = fastOps(sandbox);
      assert.ok(ops.cgroup, 'no cgroup freezer found for the container');
      const step = run(sandbox, 'while true; do :; done', { timeoutMs: 3000 });
      await sleep(200);
      await sandbox.freeze();
      assert.equal(await ops.cgroup.frozen(), true);
      const stateFile = readFileSync(join(ops.cgroup.dir, existsFreezerV1(ops.cgroup.dir) ? 'freezer.state' : 'cgroup.events'), 'utf8');
      assert.match(stateFile, /FROZEN|frozen 1/);
      await sandbox.thaw();
      assert.equal(await ops.cgroup.frozen(), false);
      const r = await step;
      assert.equal(r.stopped, 'timeout');
    } finally {
      await sandbox.destroy();
    }
  });

  test('a timeout kills every process of the container, also detached ones', async () => {
    const sandbox = await open();
    try {
      const ops = fastOps(sandbox);
      assert.ok(ops.cgroup);
      const procs = (): string => { try { return readFileSync(join(ops.cgroup!.dir, 'cgroup.procs'), 'utf8').trim(); } catch { return ''; } };
      const r = await run(sandbox, 'sleep 100 & setsid sleep 100 & echo started; sleep 30', { timeoutMs: 1000 });
      assert.deepEqual([r.stopped, r.stdout], ['timeout', 'started\n']);
      assert.ok(r.ms < 5000, `took ${r.ms} ms`);
      assert.equal(procs(), '', 'processes survived the kill');
    } finally {
      await sandbox.destroy();
    }
  });

  test('destroy during a step ends it at once and removes the container', async () => {
    const sandbox = await open();
    assert.ok(sandbox instanceof ContainerSandbox);
    const step = run(sandbox, 'echo going; sleep 30');
    await sleep(300);
    await sandbox.destroy();
    const r = await step;
    assert.equal(r.stopped, 'error');
    assert.ok(r.ms < 5000, `took ${r.ms} ms`);
    assert.equal(execFileSync('podman', ['ps', '-aq', '--filter', `name=^${sandbox.name}$`], { encoding: 'utf8' }).trim(), '');
  });

  test('a container stopped from outside fails the next step with a clear error', async () => {
    const sandbox = await open();
    try {
      assert.ok(sandbox instanceof ContainerSandbox);
      execFileSync('podman', ['kill', sandbox.name]);
      const r = await run(sandbox, 'echo hi');
      assert.equal(r.stopped, 'error');
      assert.match(r.message ?? '', /^the build container stopped \(/);
    } finally {
      await sandbox.destroy();
    }
  });

  test('cleanupStale removes a leftover that was frozen through its cgroup', async () => {
    const sandbox = await open();
    await sandbox.freeze();
    const started = Date.now();
    assert.equal(await new ContainerExecutor({ ownerId }).cleanupStale(), 1);
    assert.ok(Date.now() - started < 10_000, `removal took ${Date.now() - started} ms`);
    await sandbox.destroy().catch(() => {});
  });

  test('an image without /bin/sh falls back to the plain podman path for that build', async () => {
    const dir = tempDir();
    const root = join(dir, 'root');
    mkdirSync(join(root, 'bin'), { recursive: true });
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    for (const applet of ['sleep', 'echo']) symlinkSync('busybox', join(root, 'bin', applet));
    mkdirSync(join(root, 'work'));
    const tarball = join(dir, 'no-sh.tar');
    execFileSync('tar', ['-C', root, '-cf', tarball, '.']);
    // A rootfs base is a file in the volunteer's bases directory, named without a path.
    const environment = { base: 'rootfs:no-sh.tar', setup: [] };
    const withBases = new ContainerExecutor({ ownerId, basesDir: dir });
    const lines: string[] = [];
    await withBases.prepare(environment, (l) => lines.push(l));
    const sandbox = await withBases.open({ id: `f${process.pid}-${++seq}`, workdir: tempDir(), environment, limits: {}, network: false });
    try {
      assert.ok(sandbox instanceof ContainerSandbox && sandbox.ops instanceof PodmanOps);
      const r = await run(sandbox, ['echo', 'plain path']);
      assert.deepEqual([r.stdout, r.exitCode], ['plain path\n', 0]);
    } finally {
      await sandbox.destroy();
      const ref = /as (\S+)$/.exec(lines.find((l) => l.startsWith('importing')) ?? '')?.[1];
      if (ref) execFileSync('podman', ['rmi', ref]);
    }
  });
});

function existsFreezerV1(dir: string): boolean {
  try {
    readFileSync(join(dir, 'freezer.state'));
    return true;
  } catch {
    return false;
  }
}
