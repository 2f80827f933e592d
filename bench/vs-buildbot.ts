import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BuildView } from '../protocol/api.js';
import { startLab, startStockWorker, type Lab } from '../test/buildbot/fixture.js';
import { ROOT, startFarm, submitAll, type Farm } from './lib/crowdbake-farm.js';
import { memoryOf, onCleanup, reportPartial, sampleMemory, tracked, wallMs } from './lib/procs.js';
import { median, percentile, type BenchResult } from './types.js';

/** Builds per throughput run (200; BENCH_BUILDS overrides it for a quick development run). */
const BUILDS = Number(process.env.BENCH_BUILDS ?? 200);
const SUBMITTERS = 8;
/** Warm-up builds per worker before a throughput run, on both sides. */
const WARM_UP = 5;
/**
 * Crowdbake's throughput runs per worker count (the median is reported). One of them lasts
 * about a second, so one sample carries the machine's noise; BuildBot's one run lasts 40-50 s.
 */
const CB_BURSTS = 3;
const LOG_BYTES = 200_000 * 100;

/** What each side measured, in the same units. */
interface Side {
  /** builds/s by worker count: Crowdbake the median of its bursts. */
  throughput: Map<number, number>;
  bursts: Map<number, number[]>;
  latency: number[];
  gaps: number[];
  logMBs: number;
  logRss: { first: number; last: number; min: number; max: number };
  master16: { idle: number; peak: number };
  workerIdle: { rss: number; anon: number };
}

/**
 * Crowdbake and BuildBot 3.7 side by side, same workload, same run, same machine: trivial
 * builds/s with 4 and 16 workers (200 builds from 8 concurrent submitters), unloaded
 * submit -> step-command-running latency, the gap between consecutive builds on one worker,
 * one step printing 20 MB, and memory. Crowdbake runs real `crowdbake worker` processes with
 * the host executor; BuildBot the stock `buildbot-worker`s (which also run on the host).
 */
export async function run(): Promise<BenchResult[]> {
  const floor = await physicalLimits();
  reportPartial(floor);
  const cb = await crowdbake();
  reportPartial([...report(cb, null), ...floor]);
  const bb = await buildbot();
  return [...report(cb, bb), ...floor];
}

/**
 * What this machine allows at best, whoever schedules the builds: starting the trivial
 * command itself (16 at a time, and one alone), a step's 20 MB through a pipe into Node,
 * and the memory of an idle Node and an idle Python process.
 */
export async function physicalLimits(): Promise<BenchResult[]> {
  say('physical limits of this machine');
  const started = wallMs();
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next++ < BUILDS) await exited(tracked('echo', ['hi'], { stdio: ['ignore', 'pipe', 'ignore'] }));
  }));
  const spawnRate = BUILDS / ((wallMs() - started) / 1000);
  const starts: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = wallMs();
    const c = tracked('date', ['+%s%N'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    c.stdout!.on('data', (d: Buffer) => { text += d.toString(); });
    await exited(c);
    starts.push(nsStamp(`${text}`) - t);
  }
  const t = wallMs();
  const loud = tracked('sh', ['-c', `yes '${'x'.repeat(99)}' | head -n 200000`], { stdio: ['ignore', 'pipe', 'ignore'] });
  let bytes = 0;
  loud.stdout!.on('data', (d: Buffer) => { bytes += d.length; });
  await exited(loud);
  const pipeMBs = bytes / 1e6 / ((wallMs() - t) / 1000);
  const idle = async (cmd: string, args: string[]): Promise<{ rss: number; anon: number }> => {
    const c = tracked(cmd, args, { stdio: 'ignore' });
    await sleep(1500);
    const m = memoryOf(c.pid!);
    c.kill('SIGKILL');
    return m;
  };
  const node = await idle(process.execPath, ['-e', 'setTimeout(() => {}, 1e9)']);
  const python = await idle('python3', ['-c', 'import time; time.sleep(1e9)']);
  return [
    { name: 'limit: `echo hi` processes started from Node, 16 at a time', value: spawnRate, unit: 'processes/s', note: 'the most trivial builds/s this machine could run on the host, with no scheduling at all' },
    { name: 'limit: spawn -> `date +%s%N` running, one at a time, p50', value: median(starts), unit: 'ms', note: `p99 ${percentile(starts, 99).toFixed(2)} ms; the part of submit -> start no scheduler can remove` },
    { name: 'limit: 20 MB from `yes | head` through a pipe into Node', value: pipeMBs, unit: 'MB/s', note: 'the fastest a step\'s output reaches the worker' },
    { name: 'limit: an idle Node 20 process, RSS', value: node.rss, unit: 'MiB', note: `private ${node.anon.toFixed(1)} MiB; the floor of any agent written for Node (python3: RSS ${python.rss.toFixed(1)}, private ${python.anon.toFixed(1)} MiB)` },
  ];
}

function exited(c: ChildProcess): Promise<void> {
  return new Promise((ok) => { c.once('close', () => ok()); });
}

const say = (line: string): void => console.log(`  … ${line}`);

async function crowdbake(): Promise<Side> {
  say('Crowdbake: master and 1 worker');
  const names = Array.from({ length: 16 }, (_, i) => `w${i + 1}`);
  const farm = await startFarm(names);
  const off = onCleanup(() => farm.stop());
  try {
    const workers: ChildProcess[] = [await farm.startWorker('w1')];
    await farm.waitWorkers(1);
    for (let i = 0; i < 3; i++) await farm.waitFinished(await farm.force('trivial'));
    const log = async (id: number): Promise<string> => (await fetch(`${farm.url}/api/v1/builds/${id}/log`)).text();
    const stampOf = async (id: number): Promise<number> => nsStamp(await log(id));

    say('Crowdbake: latency, gap, 20 MB log');
    const latency: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = wallMs();
      const id = await farm.force('stamp');
      await farm.waitFinished(id);
      latency.push(await stampOf(id) - t);
    }
    const gapIds = await submitAll(farm.force, 'stamp', 50, 1);
    await farm.drained(60_000);
    const gaps = diffs(await Promise.all(gapIds.map(stampOf)));

    const rss = sampleMemory(farm.pid, 50);
    const loudId = await farm.force('loud');
    const loud = await farm.waitFinished(loudId, 120_000, 50);
    const logRss = rss.stop();
    const size = (await log(loudId)).length;
    if (size < LOG_BYTES) throw new Error(`the loud build's log has ${size} bytes, not ${LOG_BYTES}`);
    const logMBs = LOG_BYTES / 1e6 / ((Date.parse(loud.finishedAt!) - Date.parse(loud.queuedAt)) / 1000);

    const throughput = new Map<number, number>();
    const bursts = new Map<number, number[]>();
    let master16 = { idle: 0, peak: 0 };
    for (const n of [4, 16]) {
      say(`Crowdbake: ${BUILDS} builds on ${n} workers, ${CB_BURSTS} times`);
      while (workers.length < n) workers.push(await farm.startWorker(`w${workers.length + 1}`));
      await farm.waitWorkers(n);
      // Warm-up, as on BuildBot's side: every worker has run builds (its first one loads the runner and opens its history).
      await submitAll(farm.force, 'trivial', WARM_UP * n, SUBMITTERS);
      await farm.drained(300_000, 10);
      await sleep(500);
      const sampler = sampleMemory(farm.pid, 50);
      const runs: number[] = [];
      for (let r = 0; r < CB_BURSTS; r++) {
        const t0 = wallMs();
        await submitAll(farm.force, 'trivial', BUILDS, SUBMITTERS);
        await farm.drained(300_000, 10);
        const end = await farm.lastFinishedAt(BUILDS);
        runs.push(BUILDS / ((end - t0) / 1000));
        await checkAllSucceeded(farm, BUILDS);
        await sleep(300);
      }
      const peak = sampler.stop().max;
      throughput.set(n, median(runs));
      bursts.set(n, runs);
      if (n === 16) { await sleep(2000); master16 = { idle: memoryOf(farm.pid).rss, peak }; }
    }
    const workerIdle = memoryOf(workers[0]!.pid!);
    return { throughput, bursts, latency, gaps, logMBs, logRss, master16, workerIdle };
  } finally {
    off();
    await farm.stop();
  }
}

async function checkAllSucceeded(farm: Farm, n: number): Promise<void> {
  const rows = await farm.get<BuildView[]>(`/api/v1/builds?state=finished&limit=${n}`);
  const bad = rows.filter((b) => b.result !== 'success');
  if (bad.length) throw new Error(`${bad.length} builds did not succeed (build ${bad[0]!.id}: ${bad[0]!.message})`);
}

async function buildbot(): Promise<Side> {
  say('BuildBot: master and 1 stock worker');
  const names = Array.from({ length: 16 }, (_, i) => `bb${i + 1}`);
  const lab = await startLab(names, undefined, { masterCfg: join(ROOT, 'bench', 'buildbot-master.cfg') });
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => { for (const s of stops.splice(0)) await s(); await lab.stop(); };
  const off = onCleanup(stopAll);
  try {
    const start = async (name: string): Promise<number> => {
      const w = await startStockWorker(lab, name, join(lab.dir, name));
      stops.push(w.stop);
      return w.pid;
    };
    const first = await start('bb1');
    for (let i = 0; i < 3; i++) await lab.build(await lab.force('trivial'));
    const stampOf = async (brid: number): Promise<number> => nsStamp((await lab.build(brid)).steps.find((st) => st.name === 'stamp')?.logs.stdio ?? '');

    say('BuildBot: latency, gap, 20 MB log');
    const latency: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = wallMs();
      const brid = await lab.force('stamp');
      latency.push(await stampOf(brid) - t);
    }
    const gapIds: number[] = [];
    for (let i = 0; i < 20; i++) gapIds.push(await lab.force('stamp'));
    await bbDrained(lab, 120_000);
    const stamps: number[] = [];
    for (const b of gapIds) stamps.push(await stampOf(b));
    const gaps = diffs(stamps);

    const rss = sampleMemory(lab.masterPid, 50);
    const t = wallMs();
    const loud = await lab.force('loud');
    await bbDrained(lab, 300_000, 50);
    const logMBs = LOG_BYTES / 1e6 / ((wallMs() - t) / 1000);
    const logRss = rss.stop();
    const build = (await lab.get<{ builds: { buildid: number }[] }>(`builds?buildrequestid=${loud}`)).builds[0]!;
    const step = (await lab.get<{ steps: { stepid: number; name: string }[] }>(`builds/${build.buildid}/steps`)).steps.find((st) => st.name === 'loud')!;
    const lines = (await lab.get<{ logs: { num_lines: number }[] }>(`steps/${step.stepid}/logs`)).logs[0]?.num_lines ?? 0;
    if (lines < 200_000) throw new Error(`BuildBot's loud log has ${lines} lines, not 200,000`);

    const throughput = new Map<number, number>();
    let master16 = { idle: 0, peak: 0 };
    let started = 1;
    for (const n of [4, 16]) {
      say(`BuildBot: ${BUILDS} builds on ${n} workers`);
      while (started < n) await start(`bb${++started}`);
      await submitAll((b) => lab.force(b), 'trivial', WARM_UP * n, SUBMITTERS);
      await bbDrained(lab, 600_000);
      await sleep(500);
      const sampler = sampleMemory(lab.masterPid, 100);
      const t0 = wallMs();
      await submitAll((b) => lab.force(b), 'trivial', BUILDS, SUBMITTERS);
      await bbDrained(lab, 600_000);
      throughput.set(n, BUILDS / ((wallMs() - t0) / 1000));
      const peak = sampler.stop().max;
      if (n === 16) { await sleep(2000); master16 = { idle: memoryOf(lab.masterPid).rss, peak }; }
    }
    const workerIdle = memoryOf(first);
    return { throughput, bursts: new Map([...throughput].map(([n, v]) => [n, [v]])), latency, gaps, logMBs, logRss, master16, workerIdle };
  } finally {
    off();
    await stopAll();
  }
}

/** Resolves once BuildBot has no incomplete build request (polled every `everyMs`). */
async function bbDrained(lab: Lab, timeoutMs: number, everyMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await lab.get<{ buildrequests: unknown[] }>('buildrequests?complete=false&field=buildrequestid&field=complete');
    if (r.buildrequests.length === 0) return;
    if (Date.now() > end) throw new Error(`BuildBot still has build requests after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** The `date +%s%N` a stamp build printed, as ms since the epoch. */
function nsStamp(log: string): number {
  const m = /(?:^|\n)o?(\d{19})\n/.exec(log);
  if (!m) throw new Error(`no timestamp in the log: ${log.slice(0, 300)}`);
  return Number(BigInt(m[1]!) / 1000n) / 1000;
}

function diffs(stamps: number[]): number[] {
  const s = [...stamps].sort((a, b) => a - b);
  return s.slice(1).map((v, i) => v - s[i]!);
}

/** The rows of both sides; with `bb` null (BuildBot's side did not finish), Crowdbake's alone. */
function report(cb: Side, bbOrNull: Side | null): BenchResult[] {
  const x = (a: number, b: number): string => `${(a / b).toFixed(1)}×`;
  const out: BenchResult[] = [];
  const nan = NaN;
  const none: Side = { throughput: new Map([[4, nan], [16, nan]]), bursts: new Map(), latency: [nan], gaps: [nan], logMBs: nan, logRss: { first: nan, last: nan, min: nan, max: nan }, master16: { idle: nan, peak: nan }, workerIdle: { rss: nan, anon: nan } };
  const bb = bbOrNull ?? none;
  const pair = (what: string, unit: string, c: number, b: number, goal: string, note: string, better: 'higher' | 'lower'): void => {
    if (!bbOrNull) { out.push({ name: `${what}: Crowdbake`, value: c, unit, goal, note }); return; }
    const vs = better === 'higher' ? (c >= b ? `${x(c, b)} BuildBot` : `${x(b, c)} slower than BuildBot`) : (c <= b ? `${x(b, c)} less than BuildBot` : `${x(c, b)} more than BuildBot`);
    out.push({ name: `${what}: Crowdbake`, value: c, unit, goal, note: `${vs}${note ? `; ${note}` : ''}` });
    out.push({ name: `${what}: BuildBot 3.7`, value: b, unit });
  };
  for (const n of [4, 16]) {
    const c = cb.throughput.get(n)!;
    const b = bb.throughput.get(n)!;
    pair(`trivial builds, ${n} workers, ${BUILDS} builds from ${SUBMITTERS} submitters`, 'builds/s', c, b, Number.isFinite(b) ? `>= ${(100 * b).toFixed(0)} (100× BuildBot)` : '>= 100× BuildBot',
      `real \`crowdbake worker\` processes, host executor (BuildBot's stock worker also runs steps on the host); 1 build at a time per worker on both; after ${WARM_UP * n} warm-up builds on both; Crowdbake the median of ${CB_BURSTS} bursts (${(cb.bursts.get(n) ?? []).map((v) => v.toFixed(0)).join(', ')}), BuildBot one`, 'higher');
  }
  pair('submit -> step command running, unloaded, p50', 'ms', median(cb.latency), median(bb.latency), '<= 5', `N=${cb.latency.length} / ${bb.latency.length}; from the HTTP request to \`date +%s%N\` in the step`, 'lower');
  pair('submit -> step command running, unloaded, p99', 'ms', percentile(cb.latency, 99), percentile(bb.latency, 99), '', '', 'lower');
  pair('gap between consecutive builds on one worker, median', 'ms', median(cb.gaps), median(bb.gaps), '<= 5', `step-command start to the next build's step-command start, ${cb.gaps.length + 1} / ${bb.gaps.length + 1} queued builds`, 'lower');
  pair('gap between consecutive builds on one worker, p99', 'ms', percentile(cb.gaps, 99), percentile(bb.gaps, 99), '', '', 'lower');
  pair('log throughput, one step printing 20 MB', 'MB/s', cb.logMBs, bb.logMBs, '>= 100', 'submit to finished, log stored by the master', 'higher');
  const rssNote = (s: Side): string => `master RSS during it: first ${s.logRss.first.toFixed(0)}, min ${s.logRss.min.toFixed(0)}, max ${s.logRss.max.toFixed(0)}, last ${s.logRss.last.toFixed(0)} MiB`;
  out.push({ name: 'master RSS growth during the 20 MB log: Crowdbake', value: cb.logRss.max - cb.logRss.first, unit: 'MiB', goal: 'flat', note: rssNote(cb) });
  if (bbOrNull) out.push({ name: 'master RSS growth during the 20 MB log: BuildBot 3.7', value: bb.logRss.max - bb.logRss.first, unit: 'MiB', note: rssNote(bb) });
  pair('master RSS with 16 workers, idle after the run', 'MiB', cb.master16.idle, bb.master16.idle, '', `peak during the 16-worker run: Crowdbake ${cb.master16.peak.toFixed(0)}, BuildBot ${bb.master16.peak.toFixed(0)} MiB`, 'lower');
  pair('worker agent RSS, idle (after builds)', 'MiB', cb.workerIdle.rss, bb.workerIdle.rss, '<= 40', `private (RssAnon): Crowdbake ${cb.workerIdle.anon.toFixed(1)}, BuildBot ${bb.workerIdle.anon.toFixed(1)} MiB`, 'lower');
  return out;
}
