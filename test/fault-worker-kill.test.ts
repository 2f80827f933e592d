import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BuildView } from '../protocol/api.js';
import { cleanup, tempDir, testMaster, until, workerProcess } from './helpers/cluster.js';

// Fault suite: worker processes are SIGKILLed mid-step over and over, and restarted. Every
// build must still finish, on a later attempt, with a log whose attempts are all there once.
// CROWDBAKE_FAULT_WORKER_KILLS sets how many kills (default 30; 100 for the figures in docs/SECURITY.md).
const KILLS = Number(process.env.CROWDBAKE_FAULT_WORKER_KILLS ?? 30);
const WORKERS = Number(process.env.CROWDBAKE_FAULT_WORKERS ?? 6);
const MAX_ATTEMPTS = 60;
const SLOW = `
requires: { executor: host }
steps:
  - name: work
    run: echo "start $CROWDBAKE_BUILD_ID"; sleep 0.5; echo "end $CROWDBAKE_BUILD_ID"
`;

test(`fault: ${KILLS} worker SIGKILLs mid-build, each build finishes elsewhere, none lost`, async (t) => {
  const started = Date.now();
  // A worker is found gone by its socket closing; a slow heartbeat keeps an overloaded machine from cutting live ones too.
  const m = await testMaster({ slow: SLOW }, { maxAttempts: MAX_ATTEMPTS, heartbeatMs: 10_000 });
  const dirs: string[] = [];
  const procs = new Map<string, ReturnType<typeof workerProcess>>();
  const tokens = new Map<string, string>();
  const dirOf = new Map<string, string>();
  t.after(async () => { for (const p of procs.values()) p.kill('SIGKILL'); await m.close(); cleanup(...dirs); });
  const spawnWorker = (name: string) => procs.set(name, workerProcess(m.url, tokens.get(name)!, dirOf.get(name)!, ['--executor', 'host']));
  for (let i = 0; i < WORKERS; i++) {
    const name = `wk${i}`;
    const dir = tempDir(name);
    dirs.push(dir);
    dirOf.set(name, dir);
    tokens.set(name, await m.token(name));
    spawnWorker(name);
  }

  const ids: number[] = [];
  const kills: { id: number; attempt: number; worker: string }[] = [];
  // Kills are spread over builds: a requeued build is the oldest and goes out first, so it
  // would otherwise be the next victim again and again, until it runs out of attempts.
  const killsOf = (id: number) => kills.filter((k) => k.id === id).length;
  let turn = 0;
  let late = 0;
  while (kills.length < KILLS) {
    if (m.coordinator.queuedCount() < WORKERS) for (let k = 0; k < WORKERS; k++) ids.push(await m.force('slow'));
    // A worker whose build's step is running now (its output has started).
    const victim = await until('a worker mid-step', async () => {
      for (let k = 0; k < WORKERS; k++) {
        const name = `wk${(turn + k) % WORKERS}`;
        const session = m.coordinator.session(name);
        const [id] = session ? [...session.builds] : [];
        if (id === undefined || killsOf(id) >= 3) continue;
        const b = await m.get<BuildView>(`/api/v1/builds/${id}`);
        if (b.state === 'running' && b.worker === name && b.steps[0]?.state === 'running') return { name, session: session!, b };
      }
      return null;
    }, 60_000);
    turn++;
    kills.push({ id: victim.b.id, attempt: victim.b.attempt, worker: victim.name });
    const proc = procs.get(victim.name)!;
    const exited = new Promise((ok) => proc.once('exit', ok));
    proc.kill('SIGKILL');
    await exited;
    await until(`the master to notice ${victim.name} is gone`, () => m.coordinator.session(victim.name) !== victim.session, 20_000);
    spawnWorker(victim.name);
    // The step may have ended between the look and the kill (a loaded machine): not a mid-build kill.
    const after = await m.get<BuildView>(`/api/v1/builds/${victim.b.id}`);
    if (after.state === 'finished' && after.attempt === victim.b.attempt) { kills.pop(); late++; }
  }
  const killPhaseMs = Date.now() - started;

  const finished = new Map<number, BuildView>();
  for (const id of ids) finished.set(id, await m.waitFinished(id, 120_000));
  const lost = [...finished.values()].filter((b) => b.result !== 'success');
  assert.deepEqual(lost.map((b) => [b.id, b.result, b.message]), [], 'no build lost');

  for (const k of kills) {
    const b = finished.get(k.id)!;
    assert.ok(b.attempt > k.attempt, `build ${k.id} killed at attempt ${k.attempt} finished at attempt ${b.attempt}`);
  }
  for (const b of finished.values()) {
    const log = await (await fetch(`${m.url}/api/v1/builds/${b.id}/log`)).text();
    // Every attempt has exactly one header, in order; every lost one is followed by its requeue line.
    const headers = [...log.matchAll(/^\*\*\* attempt (\d+) on worker (\S+) /gm)].map((x) => Number(x[1]));
    assert.deepEqual(headers, Array.from({ length: b.attempt }, (_, i) => i + 1), `build ${b.id}:\n${log}`);
    const requeues = [...log.matchAll(/^\*\*\* worker (\S+) disconnected; build requeued \(attempt (\d+) of \d+\) \*\*\*$/gm)].map((x) => Number(x[2]));
    assert.deepEqual(requeues, headers.slice(0, -1), `build ${b.id}:\n${log}`);
    const last = log.slice(log.lastIndexOf('*** attempt '));
    assert.equal(last.match(new RegExp(`^start ${b.id}$`, 'gm'))?.length, 1, log);
    assert.equal(last.match(new RegExp(`^end ${b.id}$`, 'gm'))?.length, 1, log);
    assert.equal(last.match(/^build success$/gm)?.length, 1, log);
  }
  for (const k of kills) {
    const log = await (await fetch(`${m.url}/api/v1/builds/${k.id}/log`)).text();
    assert.match(log, new RegExp(`^\\*\\*\\* worker ${k.worker} disconnected; build requeued \\(attempt ${k.attempt} of ${MAX_ATTEMPTS}\\)`, 'm'));
  }
  const attempts = [...finished.values()].reduce((n, b) => n + b.attempt, 0);
  console.log(`fault-worker-kill: ${kills.length} SIGKILLs mid-step, ${ids.length} builds, ${attempts} attempts, ${lost.length} lost, `
    + `${new Set(kills.map((k) => k.id)).size} builds killed at least once, ${late} kills too late (build already done, not counted); kill phase ${(killPhaseMs / 1000).toFixed(1)} s, total ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
