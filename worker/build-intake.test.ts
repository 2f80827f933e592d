import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildSpec, ExecutorKind } from '../protocol/build-spec.js';
import type { BuildResult } from '../protocol/worker-messages.js';
import type { WorkerMessage } from '../protocol/worker-messages.js';
import { BuildIntake, type IntakeProject, type Running } from './build-intake.js';
import type { Executor } from './executors/executor.js';
import type { Decision } from './policy.js';
import type { RunContext } from './runner.js';

const spec = (over: Partial<BuildSpec> = {}): BuildSpec => ({
  builder: 'b', revision: null, source: null, executor: 'host', environment: { base: 'busybox', setup: [] },
  steps: [{ name: 's', run: 'true', env: {} }], artifacts: [], limits: {}, network: false, testInstall: null, ...over,
} as BuildSpec);
const assign = (buildId: number, over: Partial<BuildSpec> = {}, attempt = 1) => ({ type: 'assign' as const, buildId, attempt, spec: spec(over) });
const running: Decision = { run: true, freeze: false, cpuCap: null, paused: false, reason: 'idle', recheckInMs: null };

/** An in-memory agent around the intake: builds end when the test says, the history can fail. */
function harness(o: { maxBuilds?: number; decision?: Decision; historyFails?: boolean } = {}) {
  const sent: WorkerMessage[] = [];
  const logs: string[] = [];
  const events: string[] = [];
  const builds = new Map<number, { ctx: RunContext; end: (r: BuildResult | Error) => void }>();
  const history: string[] = [];
  const project: IntakeProject = {
    name: 'p', worker: 'w1', url: 'wss://master.example', project: {}, running: new Map(), usedMs: 0,
    send: async (m) => { sent.push(m); },
    link: { send: async (m) => { sent.push(m); }, sendLog: () => undefined },
  };
  let served = true;
  let decision = o.decision ?? running;
  let nextId = 1;
  const fail = () => { if (o.historyFails) throw new Error('ENOSPC: no space left on device'); };
  const intake = new BuildIntake({
    executors: new Map<ExecutorKind, Executor>([['host', { kind: 'host' } as Executor]]),
    maxBuilds: o.maxBuilds ?? 1, workRoot: '/nonexistent', agentVersion: 'test', volunteerLimits: () => ({ memoryBytes: 1 << 30 }),
    decision: () => decision,
    history: {
      start: (e) => { fail(); history.push(`start ${e.buildId}`); return nextId++; },
      appendLog: (id) => { fail(); history.push(`log ${id}`); },
      finish: (id, result) => { fail(); history.push(`finish ${id} ${result}`); },
    },
    runBuild: (ctx) => new Promise<BuildResult>((ok, no) => {
      builds.set(ctx.buildId, { ctx, end: (r) => (r instanceof Error ? no(r) : ok(r)) });
      ctx.signal.addEventListener('abort', () => ok('cancelled'));
    }),
    allRunning: () => [...project.running.entries()] as [number, Running][],
    serves: () => served,
    ended: () => events.push('ended'),
    changed: (why) => events.push(why),
    log: (l) => logs.push(l),
  });
  const settle = () => new Promise((ok) => setImmediate(ok));
  return { intake, project, sent, logs, events, builds, history, settle, leave: () => { served = false; }, setDecision: (d: Decision) => { decision = d; } };
}

test('a refused assignment is answered finished/error before anything runs; a volunteer refusal names the worker and is logged', async () => {
  const h = harness();
  h.intake.assign(h.project, assign(1, { executor: 'vm' }));
  h.intake.assign(h.project, assign(2, { environment: { base: 'rootfs:../../etc/shadow.tar', setup: [] } }));
  h.intake.assign(h.project, assign(3, { limits: { memoryBytes: 4 * 2 ** 30 } }));
  await h.settle();
  assert.equal(h.builds.size, 0, 'nothing ran');
  assert.deepEqual(h.history, [], 'nothing written to the history');
  assert.deepEqual(h.sent.map((m) => m.type === 'state' && [m.buildId, m.state, m.result]), [[1, 'finished', 'error'], [2, 'finished', 'error'], [3, 'finished', 'error']]);
  const [vm, base, big] = h.sent as Extract<WorkerMessage, { type: 'state' }>[];
  assert.equal(vm!.message, 'this worker has no vm executor');
  assert.match(base!.message!, /^refused by worker w1: base "/);
  assert.match(big!.message!, /^refused by worker w1: it needs 4.0 GiB of memory; this volunteer allows 1.0 GiB$/);
  assert.equal(h.logs.filter((l) => l.startsWith('refused build')).length, 2, 'only the volunteer refusals are logged');
});

test('a build runs, is written to the history, and when it ends its slot-time counts, then the slots are offered again', async () => {
  const h = harness();
  h.intake.assign(h.project, assign(7));
  assert.ok(h.project.running.has(7));
  assert.deepEqual(h.events, ['started']);
  assert.equal(h.builds.get(7)!.ctx.masterUrl, 'wss://master.example');
  h.intake.assign(h.project, assign(7, {}, 2));
  await h.settle();
  assert.equal((h.sent.at(-1) as { message: string }).message, 'build already running here', 'the same build again is answered, not run twice');
  h.project.running.get(7)!.started -= 1_500; // it has run for 1.5 s
  h.builds.get(7)!.end('success');
  await h.project.running.get(7)!.done;
  assert.equal(h.project.running.size, 0);
  assert.deepEqual(h.events, ['started', 'ended', 'finished']);
  assert.deepEqual(h.history, ['start 7', 'finish 1 success']);
  assert.ok(h.project.usedMs >= 1_500 && h.project.usedMs < 60_000, `its slot-time counts for its project: ${h.project.usedMs} ms`);
});

test('with every slot taken an assignment waits, starts when one frees, in order; a held one cancelled or of a project left never starts', async () => {
  const h = harness({ maxBuilds: 3 });
  for (let id = 1; id <= 6; id++) h.intake.assign(h.project, assign(id));
  assert.equal(h.intake.heldCount, 3);
  assert.deepEqual([...h.project.running.keys()], [1, 2, 3], 'never more than --builds at once');
  h.intake.cancel(h.project, { type: 'cancel', buildId: 5, attempt: 1, reason: 'superseded' });
  assert.equal(h.intake.heldCount, 2);
  h.builds.get(1)!.end('success');
  await h.project.running.get(1)!.done;
  assert.deepEqual([...h.project.running.keys()], [2, 3, 4], 'the first held starts');
  h.leave();
  h.builds.get(2)!.end('failure');
  await h.project.running.get(2)!.done;
  assert.deepEqual([...h.project.running.keys()], [3, 4], 'a held build of a project the agent left does not start');
  assert.ok(!h.builds.has(5) && !h.builds.has(6));
  assert.equal(h.intake.heldCount, 0);
});

test('cancel stops the running attempt it names, and only that attempt; dropHeld gives up every waiting build', async () => {
  const h = harness({ maxBuilds: 1 });
  h.intake.assign(h.project, assign(1, {}, 2));
  h.intake.cancel(h.project, { type: 'cancel', buildId: 1, attempt: 1, reason: 'old attempt' });
  assert.equal(h.builds.get(1)!.ctx.signal.aborted, false, 'a stale attempt\'s cancel does nothing');
  h.intake.cancel(h.project, { type: 'cancel', buildId: 1, attempt: 2, reason: 'by a maintainer' });
  assert.equal(h.builds.get(1)!.ctx.signal.aborted, true);
  assert.ok(h.logs.includes('build 1 cancelled: by a maintainer'));
  await h.project.running.get(1)?.done;
  h.intake.assign(h.project, assign(5));
  h.intake.assign(h.project, assign(6));
  assert.equal(h.intake.heldCount, 1);
  h.intake.dropHeld();
  assert.equal(h.intake.heldCount, 0);
  h.builds.get(5)!.end('success');
  await h.project.running.get(5)!.done;
  assert.ok(!h.builds.has(6), 'a dropped build does not start when the slot frees');
});

test('a build assigned while frozen starts frozen and the master is told; under a CPU cap it starts capped', async () => {
  const frozen: Decision = { ...running, run: false, freeze: true, reason: 'the volunteer is at the desk' };
  const h = harness({ decision: frozen, maxBuilds: 2 });
  h.intake.assign(h.project, assign(1));
  await h.settle();
  assert.equal(h.builds.get(1)!.ctx.gate.frozen, true);
  assert.deepEqual(h.sent.map((m) => m.type === 'state' && [m.state, m.message]), [['frozen', 'the volunteer is at the desk']]);
  h.setDecision({ ...running, cpuCap: 1 });
  h.intake.assign(h.project, assign(2));
  assert.equal(h.builds.get(2)!.ctx.gate.frozen, false);
  assert.equal(h.builds.get(2)!.ctx.gate.cpuCap, 1);
});

test('a history that cannot be written (a full disk) stops neither the build nor the agent; the failure is logged', async () => {
  const h = harness({ historyFails: true });
  h.intake.assign(h.project, assign(1));
  assert.ok(h.builds.has(1), 'the build runs');
  assert.equal(h.project.running.get(1)!.historyId, null);
  h.builds.get(1)!.end(new Error('the executor broke'));
  await h.project.running.get(1)!.done;
  assert.ok(h.logs.some((l) => l.startsWith('local history not written: ENOSPC')));
  assert.ok(h.logs.includes('build 1 failed: the executor broke'));
  assert.deepEqual(h.events, ['started', 'ended', 'finished']);
});

test('a master that floods assignments while every slot is taken gets at most --builds of them held; the rest are refused before anything runs', async () => {
  const h = harness({ maxBuilds: 2 });
  for (let id = 1; id <= 1000; id++) h.intake.assign(h.project, assign(id));
  assert.deepEqual([...h.project.running.keys()], [1, 2]);
  assert.equal(h.intake.heldCount, 2, 'held: as many as this master can have been offered');
  const refused = h.sent.filter((m) => m.type === 'state' && m.result === 'error');
  assert.equal(refused.length, 996);
  assert.deepEqual(refused[0], { type: 'state', buildId: 5, attempt: 1, state: 'finished', result: 'error',
    message: 'refused by worker w1: 2 of this project\'s assignments already wait for a slot here (at most --builds 2)' });
  assert.equal(h.builds.size, 2, 'none of the refused ones reached runBuild');
  h.builds.get(1)!.end('success');
  await h.project.running.get(1)!.done;
  assert.deepEqual([...h.project.running.keys()], [2, 3], 'the first held one starts when a slot frees');
});

test('a held build assigned again (a newer attempt) waits once, as that attempt; a cancel names the attempt it stops', async () => {
  const h = harness({ maxBuilds: 1 });
  h.intake.assign(h.project, assign(1));
  h.intake.assign(h.project, assign(2, {}, 1));
  h.intake.assign(h.project, assign(2, {}, 2));
  assert.equal(h.intake.heldCount, 1, 'the newer attempt took the older one\'s place');
  h.intake.cancel(h.project, { type: 'cancel', buildId: 2, attempt: 1, reason: 'stale' });
  assert.equal(h.intake.heldCount, 1, 'a cancel of the older attempt leaves the newer one waiting');
  h.builds.get(1)!.end('success');
  await h.project.running.get(1)!.done;
  assert.equal(h.project.running.get(2)?.attempt, 2, 'attempt 2 runs, once');
  h.intake.assign(h.project, assign(3));
  h.intake.cancel(h.project, { type: 'cancel', buildId: 3, attempt: 1, reason: 'superseded' });
  assert.equal(h.intake.heldCount, 0, 'the held attempt named is given up');
});
