import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ExecutorKind } from '../protocol/build-spec.js';
import type { WorkerMessage } from '../protocol/worker-messages.js';
import { DecisionApplier } from './apply-decision.js';
import type { Running } from './build-intake.js';
import { FreezeGate } from './freeze-gate.js';
import type { Decision } from './policy.js';

const decision = (over: Partial<Decision>): Decision => ({ run: true, freeze: false, cpuCap: null, paused: false, reason: 'idle', recheckInMs: null, ...over });
const build = (attempt: number, gate = new FreezeGate()): Running => ({ started: 0, historyId: null, attempt, builder: 'b', startedAt: '', controller: new AbortController(), gate, done: Promise.resolve() });

function harness(o: { draining?: boolean } = {}) {
  const sent: WorkerMessage[] = [];
  const warm: boolean[] = [];
  const logs: string[] = [];
  const offers: boolean[] = [];
  const project = { running: new Map<number, Running>(), send: async (m: WorkerMessage) => { sent.push(m); } };
  const applier = new DecisionApplier({
    executors: new Map<ExecutorKind, { kind: ExecutorKind; setWarm: (a: boolean) => Promise<void> }>([['container', { kind: 'container', setWarm: async (a) => { warm.push(a); } }]]),
    allRunning: () => [...project.running.entries()], projects: () => [project],
    draining: () => o.draining ?? false, offer: (force) => offers.push(force), log: (l) => logs.push(l),
  });
  return { applier, project, sent, warm, logs, offers };
}

test('freeze then thaw: every build frozen, then thawed under the cap; each master told its builds\' state; the slots offered again', async () => {
  const h = harness();
  h.project.running.set(4, build(2));
  h.project.running.set(5, build(1));
  await h.applier.apply(decision({ run: false, freeze: true, reason: 'the volunteer is back' }));
  assert.ok([...h.project.running.values()].every((r) => r.gate.frozen));
  assert.deepEqual(h.sent.map((m) => m.type === 'state' && [m.buildId, m.attempt, m.state, m.message]), [[4, 2, 'frozen', 'the volunteer is back'], [5, 1, 'frozen', 'the volunteer is back']]);
  assert.deepEqual(h.warm, [false], 'no warm sandbox while builds may not run');
  h.sent.length = 0;
  await h.applier.apply(decision({ cpuCap: 1, reason: 'keep going gently' }));
  assert.ok([...h.project.running.values()].every((r) => !r.gate.frozen && r.gate.cpuCap === 1));
  assert.deepEqual(h.sent.map((m) => m.type === 'state' && m.state), ['running', 'running']);
  assert.deepEqual(h.warm, [false, true]);
  assert.deepEqual(h.offers, [true, true]);
  assert.match(h.logs[1]!, /^builds may run: keep going gently \(2 build\(s\) thawed in \d+ ms\)$/);
});

test('decisions are applied in the order they came, a slow one first; a failing one is logged and the next still applies', async () => {
  const h = harness();
  let release!: () => void;
  const slow = new FreezeGate();
  slow.freeze = () => new Promise<void>((ok) => { release = ok; });
  h.project.running.set(1, build(1, slow));
  const first = h.applier.apply(decision({ run: false, freeze: true, reason: 'first' }));
  const second = h.applier.apply(decision({ reason: 'second' }));
  await new Promise((ok) => setImmediate(ok));
  assert.equal(h.logs.length, 0, 'the second waits for the first');
  release();
  await Promise.all([first, second]);
  assert.deepEqual(h.logs.map((l) => l.split(':')[1]!.trim().split(' ')[0]), ['first', 'second']);
  const broken = new FreezeGate();
  broken.freeze = async () => { throw new Error('cgroup.freeze: permission denied'); };
  h.project.running.set(2, build(1, broken));
  await h.applier.apply(decision({ run: false, freeze: true, reason: 'third' }));
  assert.ok(h.logs.includes('freeze/thaw failed: cgroup.freeze: permission denied'));
  await h.applier.apply(decision({ reason: 'fourth' }));
  assert.match(h.logs.at(-1)!, /^builds may run: fourth/);
});

test('no warm sandbox while the agent drains, even when builds may run', async () => {
  const h = harness({ draining: true });
  await h.applier.apply(decision({}));
  assert.deepEqual(h.warm, [false]);
});
