// The CPU time a build's sandbox used, measured on real processes: a host step's process
// tree, a real podman container's cgroup (both container paths), and a process by pid.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { EnvironmentSpec } from '../protocol/build-spec.js';
import { cgroupCpuMs, CpuTally, processCpuMs, reapedChildrenCpuMs } from './cpu-time.js';
import { ContainerExecutor } from './executors/container.js';
import type { Sandbox } from './executors/executor.js';
import { HostExecutor } from './executors/host.js';

// A busy loop of the shell: well over the 10 ms resolution of /proc's clock ticks on any machine.
const BUSY = 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done';
const dirs: string[] = [];
const temp = () => { const d = mkdtempSync(join(tmpdir(), 'crowdbake-cpu-')); dirs.push(d); return d; };
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

async function busyStep(sandbox: Sandbox, cmd = BUSY): Promise<void> {
  const r = await sandbox.run({ run: cmd, env: {}, timeoutMs: 60_000, signal: new AbortController().signal, onOutput: () => undefined });
  assert.equal(r.exitCode, 0, r.message ?? '');
}

test('a reaped child\'s CPU time is added to this process\'s children times; a live process is read by pid; a gone one is null', async () => {
  const before = reapedChildrenCpuMs();
  assert.notEqual(before, null);
  const child = spawn('/bin/sh', ['-c', `${BUSY}; sleep 0.2`], { stdio: 'ignore' });
  // While the loop runs (or sleeps after it) the process is there to read.
  await new Promise((r) => setTimeout(r, 100));
  const live = await processCpuMs(child.pid);
  assert.ok(live !== null && live >= 0, `live reading ${live}`);
  await new Promise((ok) => child.once('exit', ok));
  const spent = reapedChildrenCpuMs()! - before!;
  assert.ok(spent > 0, `the busy loop's CPU time reached this process: ${spent} ms`);
  assert.equal(await processCpuMs(child.pid), null, 'a reaped process has no /proc entry');
  assert.equal(await processCpuMs(0), null);
  assert.equal(await cgroupCpuMs(process.pid), null, 'this worker\'s own cgroup is not a sandbox\'s');
});

test('CpuTally: nothing known gives no field; known readings add up; a bad reading is ignored', () => {
  const t = new CpuTally();
  t.add(null);
  t.add(undefined);
  assert.deepEqual(t.field(), {});
  t.add(12.4);
  t.add(-5);
  t.add(Number.NaN);
  t.add(30);
  assert.deepEqual(t.field(), { cpuMs: 42 });
});

test('host executor: the steps\' process trees are counted, and only from the step', async () => {
  const sandbox = await new HostExecutor().open({ id: 'cpu-host', workdir: temp(), environment: { base: 'none', setup: [] }, limits: {}, network: false });
  try {
    assert.equal(await sandbox.cpuMs!(), 0, 'nothing ran yet');
    // The loop runs in a grandchild (a subshell), reaped by the step's shell: it counts too.
    await busyStep(sandbox, `(${BUSY}); true`);
    const one = (await sandbox.cpuMs!())!;
    assert.ok(one > 0, `one step: ${one} ms`);
    await busyStep(sandbox);
    assert.ok((await sandbox.cpuMs!())! > one, 'a second step adds to it');
  } finally {
    await sandbox.destroy();
  }
});

describe('container executor: the container\'s cgroup (real podman)', () => {
  const busybox: EnvironmentSpec = { base: 'busybox', setup: [] };
  for (const fastPath of [true, false]) {
    test(`${fastPath ? 'fast' : 'plain'} path: a busy step's CPU time, read before the container is removed`, async (t) => {
      const executor = new ContainerExecutor({ ownerId: `cpu-${randomBytes(4).toString('hex')}`, fastPath });
      t.after(() => executor.cleanupStale());
      assert.deepEqual(await executor.isAvailable(), { ok: true });
      await executor.prepare(busybox, () => undefined);
      const sandbox = await executor.open({ id: `cpu-${fastPath}-${process.pid}`, workdir: temp(), environment: busybox, limits: { cpus: 1 }, network: false });
      let used: number | null;
      try {
        await busyStep(sandbox);
        used = await sandbox.cpuMs!();
      } finally {
        await sandbox.destroy();
      }
      assert.ok(used !== null && used > 0, `container CPU time ${used}`);
      assert.equal(await sandbox.cpuMs!(), null, 'a removed container has no reading');
    });
  }
});
