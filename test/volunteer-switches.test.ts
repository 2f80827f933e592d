// "Finish the current build, then pause" and "start paused after a restart", against a real
// master and a real agent (host executor), both surviving a restart of the agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type { BuildView } from '../protocol/api.js';
import { startWorker, type WorkerOptions } from '../worker/agent.js';
import { AgentClient } from '../app/agent-client.js';
import { CLI, cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

const TICKER = 'requires: { executor: host }\nsteps:\n  - run: "i=0; while [ $i -lt 20 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done"\n';

test('finish the current build, then pause: it finishes unfrozen, then the agent pauses; pending at a restart it pauses; start paused', { timeout: 120_000 }, async (t) => {
  const dir = tempDir('switches');
  const m = await testMaster({ ticker: TICKER });
  const token = await m.token('sw');
  const opts: WorkerOptions = { master: m.url, token, dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } };
  let w = await startWorker(opts);
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  let agent = AgentClient.open(dir) as AgentClient;
  await until('connected', () => w.status().master.connected);

  const first = await m.force('ticker');
  await until('running', () => w.status().current.length > 0);
  await agent.call('PATCH', '/preferences', { pauseAfterCurrent: true });
  const s = w.status();
  assert.equal(s.accepting, false);
  assert.match(s.reason, /^finishing the current build, then pausing/);
  assert.equal(s.current[0]?.frozen, false, 'the current build is not frozen');
  assert.equal((await m.waitFinished(first, 30_000)).result, 'success');
  await until('paused after it', () => w.status().state === 'paused');
  assert.equal(w.status().preferences.pauseAfterCurrent, false);
  const second = await m.force('ticker');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${second}`)).state, 'queued', 'a paused agent takes nothing new');

  // The pause survives a restart; resume takes the queued build.
  await w.close();
  w = await startWorker({ ...opts, preferences: {} });
  agent = AgentClient.open(dir) as AgentClient;
  await until('connected again', () => w.status().master.connected);
  assert.equal(w.status().state, 'paused');
  await agent.call('POST', '/resume');
  await until('second running', () => w.status().current.length > 0);

  // Pending when the agent stops: the build is gone with it (the master requeues), so it starts paused.
  await agent.call('PATCH', '/preferences', { pauseAfterCurrent: true });
  await w.close();
  w = await startWorker({ ...opts, preferences: {} });
  await until('connected (3)', () => w.status().master.connected);
  assert.equal(w.status().state, 'paused');
  assert.equal(w.status().preferences.pauseAfterCurrent, false);

  // Start paused after a restart.
  agent = AgentClient.open(dir) as AgentClient;
  await agent.call('PATCH', '/preferences', { startPaused: true });
  await agent.call('POST', '/resume');
  assert.equal(w.status().state !== 'paused', true);
  await w.close();
  w = await startWorker({ ...opts, preferences: {} });
  await until('connected (4)', () => w.status().master.connected);
  assert.equal(w.status().state, 'paused');
  assert.match(w.status().reason, /paused by the volunteer/);
});

const cli = (...args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((ok) => {
  execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (e, out, err) => ok({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
});

test('crowdbake limits: while here, the here-limits, the week, grace, temperature cap, start paused; bad values refused naming the flag; pause --after-current', { timeout: 60_000 }, async (t) => {
  const dir = tempDir('switches-cli');
  const m = await testMaster({});
  const w = await startWorker({ master: m.url, token: await m.token('cli'), dataDir: dir, executor: 'host', labels: [], log: () => undefined, idleSource: 'none' });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const r = await cli('limits', '--data', dir, '--while-here', 'gently', '--here-cpus', '1.5', '--here-cpu-percent', '40', '--week', 'mon-fri 18:00-08:00; sun never',
    '--cpu-grace', '1m', '--max-temp', '85', '--start-paused', 'yes');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /while here: +keep going gently \(cpus 1\.5, 40% of all CPUs\); other CPU grace 1m0s; temperature cap 85 °C/);
  assert.match(r.out, /schedule: +mon 18:00-08:00; tue 18:00-08:00; wed 18:00-08:00; thu 18:00-08:00; fri 18:00-08:00; sun never/);
  assert.match(r.out, /pausing: +starts paused after a restart/);
  const p = w.status().preferences;
  assert.deepEqual([p.whileHere, p.hereLimits, p.otherCpuGraceMs, p.maxTemperatureC, p.startPaused], ['gently', { cpus: 1.5, cpuPercent: 40 }, 60_000, 85, true]);
  for (const [flag, value, why] of [['--while-here', 'sometimes', /while-here/], ['--week', 'funday any', /--week: "funday" in "funday any" is not a weekday/], ['--max-temp', '200', /--max-temp "200" must be 30-110/], ['--here-cpu-percent', '0', /must be 1-100/], ['--max-other-cpu', '0', /--max-other-cpu "0" must be 1-100 or off/]] as const) {
    const bad = await cli('limits', '--data', dir, flag, value);
    assert.equal(bad.code, 2, `${flag} ${value}`);
    assert.match(bad.err, why);
  }
  assert.deepEqual(w.status().preferences, p, 'a refused change changes nothing');
  const after = await cli('pause', '--after-current', '--data', dir);
  assert.equal(after.code, 0, after.err);
  assert.match(after.out, /^paused: paused by the volunteer/, 'nothing was running: paused at once');
  assert.equal((await cli('limits', '--data', dir, '--week', 'off', '--max-temp', 'off')).code, 0);
  assert.equal(w.status().preferences.weekSchedule, null);
});
