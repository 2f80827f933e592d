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
