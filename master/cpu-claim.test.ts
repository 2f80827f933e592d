import assert from 'node:assert/strict';
import { test } from 'node:test';
import { boundCpuClaim, grantedCores } from './cpu-claim.js';

test('a CPU claim is believed up to wall time × the cores granted, and cut down to that above it', () => {
  assert.deepEqual(boundCpuClaim(1500, 1000, 2), { cpuMs: 1500, cappedAt: null });
  assert.deepEqual(boundCpuClaim(2000, 1000, 2), { cpuMs: 2000, cappedAt: null });
  assert.deepEqual(boundCpuClaim(2001, 1000, 2), { cpuMs: 2000, cappedAt: 2000 });
  assert.deepEqual(boundCpuClaim(9e12, 60_000, 0.5), { cpuMs: 30_000, cappedAt: 30_000 });
  assert.deepEqual(boundCpuClaim(10, -5, 4), { cpuMs: 0, cappedAt: 0 }, 'a clock that went backwards grants nothing');
  assert.deepEqual(boundCpuClaim(Number.NaN, 1000, 1), { cpuMs: 0, cappedAt: 1000 });
});

test('the cores granted: the builder\'s limit and the worker\'s offer, the tighter', () => {
  assert.equal(grantedCores(undefined, 8), 8);
  assert.equal(grantedCores(2, 8), 2);
  assert.equal(grantedCores(16, 8), 8, 'a builder cannot grant more than the worker offers');
  assert.equal(grantedCores(0.5, 8), 0.5);
  assert.equal(grantedCores(undefined, 0), 1, 'a worker offering nothing usable counts as one core');
});

test('a worker claiming 2^31 CPUs is credited with at most MAX_CREDITED_CORES, and its hello is refused past 4096', async () => {
  const { MAX_CREDITED_CORES } = await import('./cpu-claim.js');
  const { CapabilitiesSchema } = await import('../protocol/from-worker.js');
  assert.equal(grantedCores(undefined, 2 ** 31 - 1), MAX_CREDITED_CORES);
  assert.deepEqual(boundCpuClaim(10 * 86_400_000, 60_000, grantedCores(undefined, 2 ** 31 - 1)), { cpuMs: 60_000 * MAX_CREDITED_CORES, cappedAt: 60_000 * MAX_CREDITED_CORES });
  const caps = { os: 'linux', platform: 'linux', arch: 'x64', memoryBytes: 1, diskBytes: 1, executors: ['host'], labels: [], maxBuilds: 1, virtualization: false };
  assert.equal(CapabilitiesSchema.safeParse({ ...caps, cpus: 4096 }).success, true);
  const refused = CapabilitiesSchema.safeParse({ ...caps, cpus: 2 ** 31 - 1 });
  assert.equal(refused.success, false);
  assert.deepEqual(refused.error?.issues.map((i) => i.path.join('.')), ['cpus']);
});
