import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, ROOT, startLab, startStockWorker, stopChild, until, type Lab } from '../test/buildbot/fixture.js';
import { memoryOf, onCleanup, type Memory } from './lib/procs.js';
import type { BenchResult } from './types.js';

const BUILDS = 30;

/**
 * `crowdbake worker --buildbot` next to the stock buildbot-worker 3.7 (msgpack), one after the
 * other on the same real BuildBot 3.7 master: trivial builds (one `echo hi` step) per second
 * over 30 builds forced at once (the master runs up to 4 at a time per worker), and the
 * worker process's memory idle and at its peak during those builds. RSS counts the mapped
 * interpreter binary too (shared, page cache); "private" is RssAnon, what the worker costs.
 * Then the native `crowdbake worker` (host and container executors) connected to a
 * `crowdbake master`, idle, next to a bare `node` process that only waits (the floor).
 */
/**
 * How long every worker here idles before its idle memory is read: settled, not starting. A
 * container agent is still starting for its first seconds (podman's checks, its warm sandbox),
 * and V8 gives that start-up's garbage back some seconds later (bench/README.md, "The idle
 * worker's memory"). Until 2026-12-07 the native agent was read after 3 s, the others after 2.
 */
const SETTLE_MS = 10_000;

export async function run(): Promise<BenchResult[]> {
  process.env.CROWDBAKE_CONTAINER_FAST ??= '0';
  const lab = await startLab(['stock', 'cbhost', 'cbcont'], ['trivial']);
  // Stopped (and its temp dir removed) even when the bench interrupts the scenario.
  const off = onCleanup(() => lab.stop());
  const out: BenchResult[] = [];
  try {
    const stock = await measure(lab, 'stock', async () => {
      const w = await startStockWorker(lab, 'stock', join(lab.dir, 'stock'));
      if (readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').includes('buildbot-worker') === false) throw new Error('the stock worker is not the process we started');
      return w;
    });
    const host = await measure(lab, 'cbhost', () => ours(lab, 'cbhost', 'host'));
    const cont = await measure(lab, 'cbcont', () => ours(lab, 'cbcont', 'container'));
    out.push(
      { name: 'stock buildbot-worker: trivial builds', value: stock.rate, unit: 'builds/s' },
      { name: 'crowdbake --buildbot (host): trivial builds', value: host.rate, unit: 'builds/s', goal: `>= ${stock.rate.toFixed(2)} (stock)` },
      { name: 'crowdbake --buildbot (container): trivial builds', value: cont.rate, unit: 'builds/s', note: 'each step a podman exec in the builder\'s container' },
    );
    for (const [label, m] of [['stock buildbot-worker', stock], ['crowdbake --buildbot (host)', host], ['crowdbake --buildbot (container)', cont]] as const) {
      const goal = label === 'stock buildbot-worker' ? undefined : (k: 'idle' | 'peak', v: number) => `< ${v.toFixed(1)} (stock ${k})`;
      out.push(
        { name: `${label}: RSS idle`, value: m.idle.rss, unit: 'MiB', ...(goal ? { goal: goal('idle', stock.idle.rss) } : {}) },
        { name: `${label}: private memory idle`, value: m.idle.anon, unit: 'MiB', ...(goal ? { goal: goal('idle', stock.idle.anon) } : {}) },
        { name: `${label}: PSS idle`, value: m.idle.pss, unit: 'MiB', note: 'shared pages divided among the processes mapping them', ...(goal ? { goal: goal('idle', stock.idle.pss) } : {}) },
        { name: `${label}: RSS peak during builds`, value: m.peak.rss, unit: 'MiB', ...(goal ? { goal: goal('peak', stock.peak.rss) } : {}) },
        { name: `${label}: private memory peak during builds`, value: m.peak.anon, unit: 'MiB', ...(goal ? { goal: goal('peak', stock.peak.anon) } : {}) },
      );
    }
  } finally {
    off();
    await lab.stop();
  }
  const floor = await bareNode();
  out.push({ name: 'bare node process (floor): RSS', value: floor.rss, unit: 'MiB', note: `private ${floor.anon.toFixed(1)} MiB, PSS ${floor.pss.toFixed(1)} MiB; \`node -e setInterval(…)\`` });
  // The agent as shipped (dist/worker-bundle), both executors; then the same code as a module
  // tree (CROWDBAKE_WORKER_UNBUNDLED=1), what the bundle buys.
  const stockRss = out.find((r) => r.name === 'stock buildbot-worker: RSS idle')!.value;
  for (const [executor, tree] of [['host', false], ['container', false], ['host', true]] as const) {
    const m = await nativeIdle(executor, tree);
    const what = `crowdbake worker (native, ${executor}${tree ? ', module tree' : ''}), connected, idle`;
    const settled = `${SETTLE_MS / 1000} s after connecting`;
    const note = tree ? `${settled}; CROWDBAKE_WORKER_UNBUNDLED=1: the same agent loaded as ~170 ES modules instead of dist/worker-bundle` : settled;
    out.push(
      { name: `${what}: RSS`, value: m.rss, unit: 'MiB', goal: `<= ${stockRss.toFixed(1)} (stock idle)`, note },
      { name: `${what}: private memory`, value: m.anon, unit: 'MiB', goal: '<= 25' },
      { name: `${what}: PSS`, value: m.pss, unit: 'MiB' },
    );
  }
  return out;
}

async function bareNode(): Promise<Memory> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await sleep(2000);
  const m = memoryOf(child.pid!);
  await stopChild(child);
  return m;
}


/** `crowdbake worker --master` on an idle master: its memory once connected and settled. */
async function nativeIdle(executor: 'host' | 'container', tree: boolean): Promise<Memory> {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-bench-native-'));
  const cli = join(ROOT, 'bin', 'crowdbake.js');
  mkdirSync(join(dir, 'config', 'builders'), { recursive: true });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const master = spawn(process.execPath, [cli, 'master', '--config', join(dir, 'config'), '--data', join(dir, 'master'), '--listen', `127.0.0.1:${port}`], { stdio: 'ignore' });
  let worker: ChildProcess | undefined;
  try {
    await until(async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok === true, 60_000, 'the master');
    const token = execFileSync(process.execPath, [cli, 'token', 'create', '--data', join(dir, 'master'), '--name', 'idle'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString().trim().split('\n').pop()!;
    worker = spawn(process.execPath, [cli, 'worker', '--master', base, '--token', token, '--data', join(dir, 'worker'),
      '--executor', executor, '--idle-source', 'none'], { stdio: 'ignore', env: { ...process.env, CROWDBAKE_WORKER_UNBUNDLED: tree ? '1' : '' } });
    await until(async () => {
      const r = await fetch(`${base}/api/v1/workers`).catch(() => null);
      return r?.ok === true && ((await r.json()) as { name: string; connected: boolean }[]).some((w) => w.name === 'idle' && w.connected);
    }, 60_000, 'the native worker to connect');
    await sleep(SETTLE_MS);
    return memoryOf(worker.pid!);
  } finally {
    if (worker) await stopChild(worker);
    await stopChild(master);
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Worker { pid: number; stop(): Promise<void> }

async function ours(lab: Lab, name: string, executor: string): Promise<Worker> {
  const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'bin', 'crowdbake.js'), 'worker', '--buildbot', lab.msgpackUrl,
    '--name', name, '--password', `pw-${name}`, '--executor', executor, '--basedir', join(lab.dir, name),
    '--data', join(lab.dir, `${name}-data`), '--idle-source', 'none'], { stdio: 'ignore' });
  await lab.waitConnected(name);
  return { pid: child.pid!, stop: () => stopChild(child) };
}


async function measure(lab: Lab, name: string, start: () => Promise<Worker>): Promise<{ rate: number; idle: Memory; peak: Memory }> {
  const w = await start();
  let sampler: NodeJS.Timeout | undefined;
  try {
    // One build first, so both workers are measured warm (builder dirs made, code loaded).
    await lab.build(await lab.force(`trivial@${name}`));
    await sleep(SETTLE_MS); // as for the native agent below (2 s until 2026-12-07)
    const idle = memoryOf(w.pid);
    const peak = { ...idle };
    sampler = setInterval(() => {
      const m = memoryOf(w.pid);
      peak.rss = Math.max(peak.rss, m.rss);
      peak.anon = Math.max(peak.anon, m.anon);
      peak.pss = Math.max(peak.pss, m.pss);
    }, 50);
    const started = performance.now();
    const brids: number[] = [];
    for (let i = 0; i < BUILDS; i++) brids.push(await lab.force(`trivial@${name}`));
    const first = Math.min(...brids);
    for (;;) {
      const done = await lab.get<{ buildrequests: unknown[] }>(`buildrequests?complete=true&buildrequestid__ge=${first}&field=buildrequestid&field=complete`);
      if (done.buildrequests.length >= BUILDS) break;
      await sleep(100);
    }
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    for (const brid of [brids[0]!, brids[BUILDS - 1]!]) {
      const b = await lab.build(brid);
      if (b.results !== 0) throw new Error(`trivial@${name}: build ${b.buildid} did not succeed (${b.state})`);
    }
    return { rate: BUILDS / seconds, idle, peak };
  } finally {
    clearInterval(sampler);
    await w.stop();
  }
}
