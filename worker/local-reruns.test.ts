import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutorKind } from '../protocol/build-spec.js';
import type { Executor } from './executors/executor.js';
import { HistoryStore } from './history-store.js';
import { LocalReruns } from './local-reruns.js';
import type { RunContext } from './runner.js';

const SPEC = { builder: 'b', revision: null, source: null, executor: 'host', environment: { base: 'busybox', setup: [] }, steps: [{ name: 's', run: 'true', env: {} }], artifacts: [], limits: { cpus: 4 }, network: false, testInstall: null };

function setup(t: { after(fn: () => unknown): void }, run: (ctx: RunContext) => Promise<'success' | 'failure' | 'cancelled'>) {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-reruns-'));
  const history = new HistoryStore(dir);
  const executors = new Map<ExecutorKind, Executor>([['host', { kind: 'host' } as Executor]]);
  const lines: string[] = [];
  const reruns = new LocalReruns({ history, executors, workRoot: join(dir, 'work'), volunteerLimits: () => ({ cpus: 1 }), log: (l) => lines.push(l), runBuild: run });
  t.after(async () => { await reruns.close(); history.close(); rmSync(dir, { recursive: true, force: true }); });
  return { history, reruns, lines };
}

test('a local re-run runs the kept spec under today\'s volunteer limits, talks to no master, and lands in the history as a re-run', async (t) => {
  const seen: RunContext[] = [];
  const { history, reruns, lines } = setup(t, async (ctx) => {
    seen.push(ctx);
    ctx.localLog?.(Buffer.from('hello from the re-run\n'));
    assert.equal(await ctx.send({ type: 'accepted', buildId: ctx.buildId, attempt: ctx.attempt }), undefined, 'nothing goes to a master');
    return 'failure';
  });
  const first = history.start({ buildId: 7, attempt: 2, master: 'https://m.example', builder: 'b', revision: null, spec: SPEC });
  history.finish(first, 'failure', null, 0);
  const entry = reruns.rerun(first);
  // A second re-run of the same entry at once: each has a directory of its own (its sandboxes are named after it: runner-dirs.test.ts), not the build's b7-a2.
  const second = reruns.rerun(first);
  assert.equal(entry.rerunOf, first);
  assert.equal(entry.master, 'local');
  await reruns.close();
  assert.equal(seen.length, 2);
  assert.deepEqual(seen.map((c) => c.dirName), [`local-${entry.id}`, `local-${second.id}`]);
  assert.deepEqual(seen[0]!.volunteerLimits, { cpus: 1 });
  assert.equal(seen[0]!.masterUrl, 'https://m.example');
  assert.equal(seen[0]!.spec.builder, 'b');
  const after = history.get(entry.id)!;
  assert.equal(after.result, 'failure');
  assert.equal(after.message, 'local re-run');
  assert.match(lines.join('\n'), new RegExp(`local re-run ${entry.id} of b \\(local build ${first}\\) started`));
});

test('a local re-run that cannot be made says why: no such build, no spec kept, a spec that no longer parses, no such executor here', (t) => {
  const { history, reruns } = setup(t, async () => 'success');
  assert.throws(() => reruns.rerun(999), /no local build 999/);
  const bare = history.start({ buildId: 1, attempt: 1, master: 'm', builder: 'b', revision: null });
  assert.throws(() => reruns.rerun(bare), /kept no build spec to run again/);
  const bad = history.start({ buildId: 2, attempt: 1, master: 'm', builder: 'b', revision: null, spec: { ...SPEC, steps: [] } });
  assert.throws(() => reruns.rerun(bad), /kept no build spec to run again/);
  const vm = history.start({ buildId: 3, attempt: 1, master: 'm', builder: 'b', revision: null, spec: { ...SPEC, executor: 'vm' } });
  assert.throws(() => reruns.rerun(vm), /this worker has no vm executor/);
});

test('close() stops the re-runs still going and waits for them', async (t) => {
  let aborted = false;
  const { history, reruns } = setup(t, (ctx) => new Promise((ok) => { ctx.signal.addEventListener('abort', () => { aborted = true; ok('cancelled'); }); }));
  const id = history.start({ buildId: 4, attempt: 1, master: 'm', builder: 'b', revision: null, spec: SPEC });
  const entry = reruns.rerun(id);
  await reruns.close();
  assert.equal(aborted, true);
  assert.equal(history.get(entry.id)!.result, 'cancelled');
});
