// "Keep going gently": a CPU-bound build in a real podman container keeps running under the
// volunteer's CPU cap while input arrives, measured from the container's own cgroup CPU
// counter (cgroup v2 cpu.stat usage_usec, v1 cpuacct.usage) — a bound on the share it got,
// not a timing assertion — and freezes when the volunteer chooses freeze instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BuildView } from '../protocol/api.js';
import { startWorker } from '../worker/agent.js';
import { WARM_AGENT_LABEL } from '../worker/executors/warm-pool.js';
import { cgroupLines } from '../worker/executors/fast/cgroups.js';
import { CpuQuota } from '../worker/executors/fast/cpu-quota.js';
import { AgentClient } from '../app/agent-client.js';
import { cleanup, tempDir, testMaster, until } from './helpers/cluster.js';

const execFileP = promisify(execFile);
const SPIN = 'requires: { executor: container }\nsteps:\n  - run: "while :; do :; done"\nlimits: { time: 5m, cpus: 2 }\n';
const CAP = 0.5;
/** Slack above the cap for the kernel's accounting (a period's overrun, the read's own delay). */
const MARGIN = 0.15;

/**
 * The host pid of the build's spinning step, found in the worker's own containers: the process
 * running SPIN's loop whose CPU cgroup is one of those containers'. Not by name: a build may run
 * in a warm container (worker/executors/warm-pool.ts), and another test's worker may have a
 * container of the same build number; the cgroup measured is the one the step really runs in.
 */
const stepPid = async (owner: string): Promise<number | null> => {
  const { stdout } = await execFileP('podman', ['ps', '--filter', `label=crowdbake.owner=${owner}`, '--format', '{{.Pid}}']);
  const cpuCgroup = async (pid: number) => (await cgroupLines(pid)).find((l) => l.controllers.includes('cpu') || l.controllers.length === 0)?.path ?? null;
  const ours = new Set(await Promise.all(stdout.split('\n').map(Number).filter((p) => p > 0).map(cpuCgroup)));
  const found: number[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    const cmd = (() => { try { return readFileSync(`/proc/${name}/cmdline`, 'utf8'); } catch { return ''; } })();
    if (cmd.includes('while :; do :; done') && ours.has(await cpuCgroup(Number(name)))) found.push(Number(name));
  }
  assert.ok(found.length <= 1, `one build of ${owner} spins: ${found.join(', ')}`);
  return found[0] ?? null;
};

/** Warm containers (made ahead for the next build) of a worker. */
const warmCount = (owner: string): number => execFileSync('podman', ['ps', '-a', '-q', '--filter', `label=crowdbake.owner=${owner}`, '--filter', `label=${WARM_AGENT_LABEL}`])
  .toString().split('\n').filter(Boolean).length;

/** CPU cores the container used over a stretch of `ms`, with input reported every 200 ms meanwhile (the volunteer typing). */
async function shareWhileTyping(q: CpuQuota, ms: number, input: () => Promise<unknown>): Promise<number> {
  const u0 = await q.usageUsec();
  const t0 = process.hrtime.bigint();
  for (let waited = 0; waited < ms; waited += 200) {
    await input();
    await new Promise((r) => setTimeout(r, 200));
  }
  const u1 = await q.usageUsec();
  const t1 = process.hrtime.bigint();
  assert.ok(u0 !== null && u1 !== null, 'the container\'s CPU counter is readable');
  return (u1 - u0) / (Number(t1 - t0) / 1000);
}

test('keep going gently: a CPU-bound build runs under the cap while the volunteer types, and freezes when freeze is chosen', { timeout: 180_000 }, async (t) => {
  const dir = tempDir('throttle');
  const m = await testMaster({ spin: SPIN });
  const w = await startWorker({
    master: m.url, token: await m.token('gentle'), dataDir: dir, executor: 'container', labels: [], log: () => undefined, idleSource: 'app',
    preferences: { when: 'idle', idleAfterMs: 60_000, whileHere: 'gently', hereLimits: { cpus: CAP, cpuPercent: null } },
  });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const agent = AgentClient.open(dir) as AgentClient;
  const away = () => agent.reportIdle({ idleMs: 600_000, locked: false, suspended: false });
  const typing = () => agent.reportIdle({ idleMs: 0, locked: false, suspended: false });
  await until('connected', () => w.status().master.connected);
  await away();

  const id = await m.force('spin');
  await until('running', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'running' && w.status().current.length > 0, 60_000);
  const pid = await until('the build\'s step in its container', () => stepPid('w-gentle'), 60_000);
  const q = await CpuQuota.ofPid(pid);
  assert.ok(q, 'the container\'s CPU cgroup is found');

  // Away: no cap beyond the builder's two CPUs.
  assert.equal(w.status().cpuCap, null);
  const throttledBefore = await q.throttledPeriods();

  // The volunteer comes back: the build keeps going, held to half a core.
  await typing();
  await until('capped', () => w.status().cpuCap === CAP);
  const s = w.status();
  assert.equal(s.state, 'busy');
  assert.equal(s.current[0]?.frozen, false);
  assert.match(s.reason, /keeping going gently while you use this computer \(at most 0\.5 CPU\(s\)\)/);
  assert.equal((await m.get<BuildView>(`/api/v1/builds/${id}`)).state, 'running', 'the master sees it running, not frozen');
  const gentle = await shareWhileTyping(q, 3000, typing);
  assert.ok(gentle > 0, `the build kept running (${gentle.toFixed(3)} CPUs)`);
  assert.ok(gentle < CAP + MARGIN, `the build stayed under its cap: ${gentle.toFixed(3)} CPUs, cap ${CAP}`);
  t.diagnostic(`gently: ${gentle.toFixed(3)} CPUs under a cap of ${CAP}`);
  // How often the kernel held it back is shown, not asserted: on a loaded machine the build may
  // get less than its quota and never be throttled (the bound above is what must hold).
  const throttledAfter = await q.throttledPeriods();
  if (throttledBefore !== null && throttledAfter !== null) t.diagnostic(`throttled in ${throttledAfter - throttledBefore} CFS periods`);

  // Freeze chosen instead: the same input now freezes it (no CPU at all), the master shows it frozen.
  await agent.call('PATCH', '/preferences', { whileHere: 'freeze' });
  await typing();
  await until('frozen', () => w.status().current[0]?.frozen === true);
  await until('frozen on the master', async () => (await m.get<BuildView>(`/api/v1/builds/${id}`)).state === 'frozen');
  const frozen = await shareWhileTyping(q, 1500, typing);
  assert.ok(frozen < 0.02, `a frozen build uses no CPU (${frozen.toFixed(3)} CPUs)`);
  t.diagnostic(`frozen: ${frozen.toFixed(3)} CPUs`);

  // Away again: thawed, and the cap is lifted back to the container's own quota.
  await away();
  await until('thawed', () => w.status().current[0]?.frozen === false && w.status().cpuCap === null);
  const free = await shareWhileTyping(q, 1500, async () => undefined);
  assert.ok(free > 0, 'it runs again');
  t.diagnostic(`away: ${free.toFixed(3)} CPUs (the builder's own cap is 2; the machine is shared)`);
});

test('the temperature cap: above it builds are throttled, 5 °C above it held (thermal zones from a directory standing in for /sys/class/thermal)', { timeout: 180_000 }, async (t) => {
  const dir = tempDir('thermal');
  const thermal = join(dir, 'thermal-stand-in');
  const zone = join(thermal, 'thermal_zone0');
  mkdirSync(zone, { recursive: true });
  const heat = (c: number) => writeFileSync(join(zone, 'temp'), `${c * 1000}\n`);
  heat(50);
  const m = await testMaster({ spin: SPIN });
  const w = await startWorker({
    master: m.url, token: await m.token('hot'), dataDir: dir, executor: 'container', labels: [], log: () => undefined, idleSource: 'none', thermalRoot: thermal,
    preferences: { when: 'always', maxTemperatureC: 80, hereLimits: { cpus: CAP, cpuPercent: null } },
  });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  await m.force('spin');
  await until('running', () => w.status().current.length > 0, 60_000);
  const q = await CpuQuota.ofPid(await until('the build\'s step in its container', () => stepPid('w-hot'), 60_000));
  assert.ok(q);
  await until('temperature read', () => w.status().temperatureC === 50);
  assert.equal(w.status().cpuCap, null);
  // As root the pool makes a warm sandbox behind the build (for the next one of its environment).
  if (process.getuid?.() === 0) await until('a warm sandbox behind the build', () => warmCount('w-hot') === 1, 60_000);

  heat(82);
  await until('throttled', () => w.status().cpuCap === CAP, 30_000);
  assert.match(w.status().reason, /throttled to 0\.5 CPU\(s\): 82 °C \(cap 80 °C\)/);
  const hot = await shareWhileTyping(q, 2000, async () => undefined);
  assert.ok(hot > 0 && hot < CAP + MARGIN, `throttled, still running: ${hot.toFixed(3)} CPUs`);

  heat(86);
  await until('held', () => w.status().current[0]?.frozen === true, 30_000);
  assert.match(w.status().reason, /too hot: 86 °C \(held above 85 °C\)/);
  // Too hot for builds: no warm sandbox is kept either (the one made behind this build is removed).
  await until('no warm sandbox while held', () => warmCount('w-hot') === 0, 30_000);

  heat(60);
  await until('cooled down', () => w.status().current[0]?.frozen === false && w.status().cpuCap === null, 30_000);
  if (process.getuid?.() === 0) await until('a warm sandbox again once builds may run', () => warmCount('w-hot') === 1, 60_000);
});

test('the local history records the CPU time a container build used (its cgroup\'s counter), for "what this computer gave"', { timeout: 120_000 }, async (t) => {
  const dir = tempDir('cpu-time');
  const m = await testMaster({ busy: 'requires: { executor: container }\nsteps:\n  - run: "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo counted"\n' });
  const w = await startWorker({ master: m.url, token: await m.token('counter'), dataDir: dir, executor: 'container', labels: [], log: () => undefined, idleSource: 'none', preferences: { when: 'always' } });
  t.after(async () => { await w.close(); await m.close(); cleanup(dir); });
  const id = await m.force('busy');
  assert.equal((await m.waitFinished(id, 90_000)).result, 'success');
  const agent = AgentClient.open(dir) as AgentClient;
  const entry = await until('history entry finished', async () => ((await agent.call('GET', '/history?limit=5')) as { buildId: number; finishedAt: string | null; cpuMs?: number | null }[]).find((h) => h.buildId === id && h.finishedAt));
  assert.ok(typeof entry.cpuMs === 'number' && entry.cpuMs > 0, `cpuMs ${entry.cpuMs}`);
  t.diagnostic(`a 300000-iteration shell loop used ${entry.cpuMs} ms of CPU`);
});
