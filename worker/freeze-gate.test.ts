import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Freezable } from './executors/executor.js';
import { FreezeGate } from './freeze-gate.js';

/** A sandbox that records what the gate did to it (with a CPU quota, or without one like host and VM sandboxes). */
function sandbox(withQuota: boolean, cpuUsec: number | null = null) {
  const calls: string[] = [];
  const s: Freezable = {
    freeze: async () => { calls.push('freeze'); },
    thaw: async () => { calls.push('thaw'); },
    ...(withQuota ? { limitCpu: async (cpus: number | null) => { calls.push(`cap ${cpus}`); } } : {}),
    ...(cpuUsec !== null ? { cpuUsageUsec: () => cpuUsec } : {}),
  };
  return { s, calls };
}

test('a CPU cap: sandboxes with a quota are capped, the others frozen until it lifts; freeze and thaw still win', async () => {
  const gate = new FreezeGate();
  const quota = sandbox(true, 2_500_000);
  const plain = sandbox(false);
  await gate.attach(quota.s);
  await gate.attach(plain.s);
  await gate.limitCpu(0.5);
  assert.deepEqual([quota.calls, plain.calls], [['cap 0.5'], ['freeze']]);
  assert.equal(gate.frozen, false);
  assert.equal(gate.heldByCap, true, 'the plain sandbox is on hold');
  await gate.freeze();
  await gate.thaw();
  assert.deepEqual(plain.calls, ['freeze'], 'a thaw does not release a sandbox the cap holds');
  assert.deepEqual(quota.calls, ['cap 0.5', 'freeze', 'thaw']);
  await gate.limitCpu(null);
  assert.deepEqual([quota.calls.at(-1), plain.calls.at(-1)], ['cap null', 'thaw']);
  assert.equal(gate.heldByCap, false);
  // A sandbox opened while capped gets the cap at once.
  await gate.limitCpu(1);
  const later = sandbox(true);
  await gate.attach(later.s);
  assert.deepEqual(later.calls, ['cap 1']);
  gate.detach(quota.s);
  gate.detach(plain.s);
  assert.equal(gate.cpuMs, 2500, 'the CPU time of detached sandboxes that could tell');
});
