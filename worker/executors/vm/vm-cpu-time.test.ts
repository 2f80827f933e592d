// The CPU time of a build in a VM is QEMU's own process time (worker/cpu-time.ts): real QEMU
// (KVM when there is /dev/kvm, else TCG), the same guest cache as vm.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { EnvironmentSpec } from '../../../protocol/build-spec.js';
import type { Sandbox } from '../executor.js';
import { VmExecutor } from './vm.js';

const CACHE = join(tmpdir(), 'crowdbake-vm-test-cache');
const BUSYBOX: EnvironmentSpec = { base: 'vm:busybox', setup: [] };
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

async function step(sandbox: Sandbox, run: string): Promise<void> {
  const r = await sandbox.run({ run, env: {}, timeoutMs: 120_000, signal: new AbortController().signal, onOutput: () => undefined });
  assert.equal(r.exitCode, 0, r.message ?? '');
}

test('a VM sandbox reports QEMU\'s CPU time: a busy step adds more than an idle one; none once destroyed', { timeout: 900_000 }, async () => {
  const executor = new VmExecutor({ ownerId: `vmcpu-${process.pid}`, cacheDir: CACHE });
  const a = await executor.isAvailable();
  assert.ok(a.ok, a.ok ? '' : a.reason);
  await executor.prepare(BUSYBOX, () => undefined);
  const workdir = mkdtempSync(join(tmpdir(), 'crowdbake-vmcpu-'));
  dirs.push(workdir);
  const sandbox = await executor.open({ id: `vmcpu-${process.pid}`, workdir, environment: BUSYBOX, limits: { cpus: 1 }, network: false });
  try {
    const t0 = (await sandbox.cpuMs!())!;
    assert.ok(t0 > 0, `booting cost QEMU CPU time: ${t0} ms`);
    await step(sandbox, 'true');
    const t1 = (await sandbox.cpuMs!())!;
    await step(sandbox, 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done');
    const t2 = (await sandbox.cpuMs!())!;
    assert.ok(t2 - t1 > t1 - t0, `busy step ${t2 - t1} ms, idle step ${t1 - t0} ms`);
  } finally {
    await sandbox.destroy();
  }
  assert.equal(await sandbox.cpuMs!(), null, 'QEMU is gone');
});
