import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EnvironmentSpec, Limits } from '../../protocol/build-spec.js';
import { ensureBusyboxImage, isStaticElf } from './busybox-image.js';
import { detectExecutors } from './detect.js';
import { ContainerSandbox, PodmanOps } from './container-sandbox.js';
import { ContainerExecutor } from './container.js';
import type { Sandbox, StepOutcome, StepRequest } from './executor.js';
import { until } from '../../test/helpers/wait.js';

// Runs against the real podman on this machine. The owner id is unique to this file and
// process, so parallel test files never touch each other's containers.
const ownerId = `test-container-${process.pid}`;
const executor = new ContainerExecutor({ ownerId });
const busybox: EnvironmentSpec = { base: 'busybox', setup: [] };
const dirs: string[] = [];
let seq = 0;

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'crowdbake-ctest-'));
  dirs.push(d);
  return d;
}

async function openSandbox(limits: Limits = {}, network = false): Promise<{ sandbox: Sandbox; workdir: string; id: string }> {
  const workdir = tempDir();
  const id = `t${process.pid}-${++seq}`;
  const sandbox = await executor.open({ id, workdir, environment: busybox, limits, network });
  return { sandbox, workdir, id };
}

interface Ran extends StepOutcome { stdout: string; stderr: string; ms: number }

async function run(sandbox: Sandbox, cmd: string | string[], extra: Partial<StepRequest> = {}): Promise<Ran> {
  const out = { stdout: '', stderr: '' };
  const started = Date.now();
  const outcome = await sandbox.run({
    run: cmd, env: {}, timeoutMs: 20_000, signal: new AbortController().signal,
    onOutput: (chunk, stream) => { out[stream] += chunk.toString(); },
    ...extra,
  });
  return { ...outcome, ...out, ms: Date.now() - started };
}

function containersWithLabel(label: string): string[] {
  return execFileSync('podman', ['ps', '-a', '--filter', `label=${label}`, '--format', '{{.Names}}'], { encoding: 'utf8' })
    .split('\n').filter(Boolean);
}

describe('ContainerExecutor (real podman)', () => {
  before(async () => {
    assert.deepEqual(await executor.isAvailable(), { ok: true });
    // The tests below run on the fast path (see fast/); the plain path has its own block at the end.
    assert.equal(executor.mode, 'fast');
    await executor.prepare(busybox, () => {});
  });
  after(async () => {
    await executor.cleanupStale();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('busybox image is reused and shared by concurrent callers', async () => {
    const [a, b] = await Promise.all([ensureBusyboxImage(), ensureBusyboxImage()]);
    assert.equal(a, b);
    assert.match(a, /^localhost\/crowdbake-busybox:[0-9a-f]{12}$/);
  });

  test('busybox must be statically linked; auto detection offers container, never host', async () => {
    assert.equal(isStaticElf(readFileSync('/bin/busybox')), true);
    assert.equal(isStaticElf(readFileSync(process.execPath)), false);
    await assert.rejects(ensureBusyboxImage(() => {}, process.execPath), /base busybox needs Debian's busybox-static/);
    const detected = await detectExecutors(`${ownerId}-detect`, 'auto');
    const kinds = detected.executors.map((e) => e.kind);
    assert.equal(kinds[0], 'container', 'container first: it is preferred');
    assert.ok(!kinds.includes('host'), 'host is never offered unless asked for');
  });

  test('unknown bases are refused clearly; a failing setup line is named', async () => {
    await assert.rejects(executor.prepare({ base: 'vm:disk.qcow2', setup: [] }, () => {}),
      /base "vm:disk.qcow2" is not supported by the container executor yet/);
    await assert.rejects(executor.prepare({ base: 'busybox', setup: ['apk add gcc'] }, () => {}),
      /setup 1\/1 "apk add gcc" failed with exit code 127/);
  });

  test('rootfs:NAME.tar from the bases directory is imported once, tagged by its sha256, and runs', async () => {
    const dir = tempDir();
    const root = join(dir, 'root');
    mkdirSync(join(root, 'bin'), { recursive: true });
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    for (const applet of ['sh', 'sleep', 'echo']) symlinkSync('busybox', join(root, 'bin', applet));
    mkdirSync(join(root, 'work'));
    const tarball = join(dir, 'rootfs.tar');
    execFileSync('tar', ['-C', root, '-cf', tarball, '.']);
    const environment = { base: 'rootfs:rootfs.tar', setup: [] };
    const lines: string[] = [];
    const withBases = new ContainerExecutor({ ownerId, basesDir: dir });
    await withBases.prepare(environment, (l) => lines.push(l));
    await withBases.prepare(environment, (l) => lines.push(l));
    await assert.rejects(executor.prepare({ base: `rootfs:${tarball}`, setup: [] }, () => {}), /names a path on the worker/);
    assert.equal(lines.filter((l) => l.startsWith('importing')).length, 1, lines.join('\n'));
    const ref = /as (\S+)$/.exec(lines[0] ?? '')?.[1] ?? '';
    assert.match(ref, /^localhost\/crowdbake-rootfs:[0-9a-f]{12}$/);
    const sandbox = await withBases.open({ id: `t${process.pid}-rootfs`, workdir: tempDir(), environment, limits: {}, network: false });
    try {
      const r = await run(sandbox, 'echo from rootfs');
      assert.deepEqual([r.stdout, r.exitCode], ['from rootfs\n', 0]);
    } finally {
      await sandbox.destroy();
      execFileSync('podman', ['rmi', ref]);
    }
  });

  test('streams output, returns the exit code, passes env and argv', async () => {
    const { sandbox } = await openSandbox();
    try {
      const r = await run(sandbox, 'echo out; echo err >&2; echo "$GREETING"; exit 3', { env: { GREETING: 'hi there' } });
      assert.equal(r.stdout, 'out\nhi there\n');
      assert.equal(r.stderr, 'err\n');
      assert.deepEqual([r.exitCode, r.stopped, r.message], [3, null, null]);
      const argv = await run(sandbox, ['echo', 'a  b', '$HOME']);
      assert.equal(argv.stdout, 'a  b $HOME\n');
      assert.equal(argv.exitCode, 0);
    } finally {
      await sandbox.destroy();
    }
  });

  test('onOutput promises are awaited, in order, before the step resolves', async () => {
    const { sandbox } = await openSandbox();
    try {
      const seen: string[] = [];
      let busy = false;
      const outcome = await sandbox.run({
        run: 'for i in 1 2 3 4 5; do echo $i; sleep 0.05; done', env: {}, timeoutMs: 20_000,
        signal: new AbortController().signal,
        onOutput: async (chunk) => {
          assert.equal(busy, false, 'onOutput called while a previous promise was pending');
          busy = true;
          await sleep(100);
          seen.push(chunk.toString());
          busy = false;
        },
      });
      assert.equal(outcome.exitCode, 0);
      assert.equal(seen.join(''), '1\n2\n3\n4\n5\n');
    } finally {
      await sandbox.destroy();
    }
  });

  test('the workdir is /work, read-write, shared with the host', async () => {
    const { sandbox, workdir } = await openSandbox();
    try {
      writeFileSync(join(workdir, 'in.txt'), 'from host\n');
      const r = await run(sandbox, 'pwd; cat in.txt; echo from container > /work/out.txt');
      assert.equal(r.stdout, '/work\nfrom host\n');
      assert.equal(r.exitCode, 0);
      assert.equal(readFileSync(join(workdir, 'out.txt'), 'utf8'), 'from container\n');
    } finally {
      await sandbox.destroy();
    }
  });

  test('the step cannot see the host and has no network but lo', async () => {
    const outside = tempDir();
    const marker = join(outside, 'host-secret');
    writeFileSync(marker, 'secret');
    const { sandbox } = await openSandbox();
    try {
      const r = await run(sandbox, `test -e ${marker} && echo visible; cat /etc/hostname; echo; cat /proc/net/dev`);
      assert.equal(r.exitCode, 0);
      assert.doesNotMatch(r.stdout, /visible/);
      const hostHostname = readFileSync('/etc/hostname', 'utf8').trim();
      const [containerHostname] = r.stdout.split('\n');
      assert.notEqual(containerHostname, hostHostname);
      const interfaces = r.stdout.split('\n').filter((l) => /^\s*[\w.-]+:/.test(l)).map((l) => l.split(':')[0]!.trim());
      assert.deepEqual(interfaces, ['lo']);
    } finally {
      await sandbox.destroy();
    }
  });

  test('a step over its time limit is killed and reported as timeout', async () => {
    const { sandbox } = await openSandbox();
    try {
      const r = await run(sandbox, 'echo started; sleep 30', { timeoutMs: 1000 });
      assert.equal(r.stopped, 'timeout');
      assert.equal(r.message, 'step exceeded its time limit of 1s');
      assert.equal(r.stdout, 'started\n');
      assert.ok(r.ms < 8000, `took ${r.ms} ms`);
      const next = await run(sandbox, 'true');
      assert.equal(next.stopped, 'error');
    } finally {
      await sandbox.destroy();
    }
  });

  test('aborting the signal cancels the step', async () => {
    const { sandbox } = await openSandbox();
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 500);
      const r = await run(sandbox, 'sleep 30', { signal: ac.signal });
      assert.equal(r.stopped, 'cancelled');
      assert.ok(r.ms < 8000, `took ${r.ms} ms`);
    } finally {
      await sandbox.destroy();
    }
  });

  test('freeze stops the step and its timer; thaw resumes both', async () => {
    const { sandbox, workdir } = await openSandbox();
    try {
      const counter = join(workdir, 'counter');
      const read = (): number => (existsSync(counter) ? Number(readFileSync(counter, 'utf8').trim() || '0') : 0);
      const step = run(sandbox, 'i=0; while true; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; sleep 0.05; done',
        { timeoutMs: 5000 });
      // The loop is running (an exec can take seconds on a loaded machine), then it is frozen.
      await until('the step\'s loop to count', () => read() >= 2);
      await sandbox.freeze();
      const frozenAt = read();
      await sleep(1200);
      assert.equal(read(), frozenAt, 'counter moved while frozen');
      await sandbox.thaw();
      await until('the counter to move after thaw', () => read() > frozenAt);
      const r = await step;
      assert.equal(r.stopped, 'timeout');
      assert.ok(r.ms >= 5000 + 1000, `timed out after ${r.ms} ms: frozen time was counted`);
    } finally {
      await sandbox.destroy();
    }
  });

  test('a step started while frozen waits for thaw', async () => {
    const { sandbox } = await openSandbox();
    try {
      await sandbox.freeze();
      let finished = false;
      // Frozen longer than its time limit (see host.test.ts); wide enough for an exec after the thaw on a loaded machine.
      const step = run(sandbox, 'echo ran', { timeoutMs: 5000 }).finally(() => { finished = true; });
      await sleep(5500);
      assert.equal(finished, false);
      await sandbox.thaw();
      const r = await step;
      assert.deepEqual([r.stdout, r.exitCode, r.stopped], ['ran\n', 0, null]);
    } finally {
      await sandbox.destroy();
    }
  });

  test('a step over the memory limit is reported as memory', async () => {
    const { sandbox } = await openSandbox({ memoryBytes: 64 * 1024 * 1024 });
    try {
      const r = await run(sandbox, 'dd if=/dev/zero of=/dev/null bs=200M count=1');
      assert.equal(r.stopped, 'memory');
      assert.equal(r.exitCode, 137);
      assert.match(r.message ?? '', /memory limit of 64 MiB/);
      const next = await run(sandbox, 'echo still here');
      assert.deepEqual([next.stdout, next.exitCode, next.stopped], ['still here\n', 0, null]);
    } finally {
      await sandbox.destroy();
    }
  });

  test('destroy removes the container and is idempotent', async () => {
    const { sandbox, id } = await openSandbox();
    assert.deepEqual(containersWithLabel(`crowdbake.sandbox=${id}`), [`crowdbake-${id}`]);
    await Promise.all([sandbox.destroy(), sandbox.destroy()]);
    await sandbox.destroy();
    assert.deepEqual(containersWithLabel(`crowdbake.sandbox=${id}`), []);
    assert.equal((await run(sandbox, 'true')).stopped, 'error');
  });

  test('cleanupStale removes containers this owner left behind, only those', async () => {
    const other = new ContainerExecutor({ ownerId: `${ownerId}-other` });
    const { id } = await openSandbox();
    const otherBox = await other.open({ id: `${id}-other`, workdir: tempDir(), environment: busybox, limits: {}, network: false });
    try {
      assert.equal(await executor.cleanupStale(), 1);
      assert.deepEqual(containersWithLabel(`crowdbake.owner=${ownerId}`), []);
      assert.equal(containersWithLabel(`crowdbake.owner=${ownerId}-other`).length, 1);
    } finally {
      await otherBox.destroy();
    }
  });
});

// The fallback: `podman exec` per step, `podman pause`, `podman kill` (fastPath: false, or
// CROWDBAKE_CONTAINER_FAST=0). The same guarantees, checked on the essentials.
describe('ContainerExecutor, plain podman path (real podman)', () => {
  const plain = new ContainerExecutor({ ownerId: `${ownerId}-plain`, fastPath: false });
  const openPlain = async (): Promise<{ sandbox: Sandbox; workdir: string }> => {
    const workdir = tempDir();
    const sandbox = await plain.open({ id: `t${process.pid}-p${++seq}`, workdir, environment: busybox, limits: {}, network: false });
    return { sandbox, workdir };
  };
  before(async () => {
    assert.deepEqual(await plain.isAvailable(), { ok: true });
    assert.equal(plain.mode, 'plain');
  });
  after(async () => { await plain.cleanupStale(); });

  test('runs steps with podman exec: output, exit code, env', async () => {
    const { sandbox } = await openPlain();
    try {
      assert.ok(sandbox instanceof ContainerSandbox && sandbox.ops instanceof PodmanOps);
      const r = await run(sandbox, 'echo out; echo err >&2; echo "$GREETING"; exit 3', { env: { GREETING: 'hi there' } });
      assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.stopped], ['out\nhi there\n', 'err\n', 3, null]);
    } finally {
      await sandbox.destroy();
    }
  });

  test('freeze (podman pause) stops the step and its timer; a timeout kills the container', async () => {
    const { sandbox, workdir } = await openPlain();
    try {
      const counter = join(workdir, 'counter');
      const read = (): number => (existsSync(counter) ? Number(readFileSync(counter, 'utf8').trim() || '0') : 0);
      const step = run(sandbox, 'i=0; while true; do i=$((i+1)); echo $i > counter.tmp; mv counter.tmp counter; sleep 0.05; done',
        { timeoutMs: 4000 });
      await until('the step\'s loop to count', () => read() >= 2);
      await sandbox.freeze();
      const frozenAt = read();
      await sleep(800);
      assert.equal(read(), frozenAt, 'counter moved while frozen');
      await sandbox.thaw();
      const r = await step;
      assert.equal(r.stopped, 'timeout');
      assert.ok(r.ms >= 4000 + 700, `timed out after ${r.ms} ms: frozen time was counted`);
      assert.equal((await run(sandbox, 'true')).stopped, 'error');
    } finally {
      await sandbox.destroy();
    }
  });
});
