import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BuildView } from '../protocol/api.js';
import { openStore } from '../master/store/open-store.js';
import { TestDatabases } from '../master/store/postgres-test-db.js';
import { createWorkerToken } from '../master/tokens.js';
import { renderPngs, type Chart } from './lib/chart.js';
import { CLI, ROOT } from './lib/crowdbake-farm.js';
import { Client } from 'pg';
import WebSocket from 'ws';
import { benchDir, cpuMsOf, onCleanup, reportPartial, stop, tracked, wallMs } from './lib/procs.js';
import { percentile, type BenchResult } from './types.js';

/** Env lists such as BENCH_SCALE_WORKERS=1000,10000; a bad entry is refused, naming it. */
function list(name: string, fallback: string): number[] {
  const raw = process.env[name] ?? fallback;
  return raw.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}="${raw}": "${s}" is not a positive whole number`);
    return n;
  });
}

const WORKERS = list('BENCH_SCALE_WORKERS', '1000,10000');
const MASTERS = list('BENCH_SCALE_MASTERS', '1,2,3');
const BUILDS = list('BENCH_SCALE_BUILDS', '2000')[0]!;
const SAMPLES = list('BENCH_SCALE_SAMPLES', '200')[0]!;
const CLIENTS = list('BENCH_SCALE_CLIENTS', '4')[0]!;
const BUILDER = 'description: one trivial step\nrequires: { executor: host }\nsteps:\n  - { name: echo, run: [echo, hi] }\n';

interface Master { url: string; pid: number; admin: string; child: ChildProcess; output: () => string; inspector: string }
interface Fleet { child: ChildProcess; dump(): Promise<{ assigned: [number, number][]; cpuMs: number; rssMiB: number }> }

export interface ScalePoint {
  masters: number;
  workers: number;
  /** Light load: one build every 20 ms, round-robin over the masters; POST sent → `assign` received. */
  latencyP50: number;
  latencyP99: number;
  /** Under load: BUILDS builds from 8 submitters; same clock. */
  loadP50: number;
  loadP99: number;
  rate: number;
  /** Masters' CPU (all of them) per build of the loaded phase; PostgreSQL's too. */
  cpuMsPerBuild: number;
  pgCpuMsPerBuild: number;
  /** Transactions committed in the bench's database per build of the loaded phase (every statement outside BEGIN is one). */
  xactsPerBuild: number;
  /** Growth per 1,000 connected idle workers (MiB), per master, averaged over the masters. */
  rssPer1000: number;
  heapPer1000: number;
  rssIdle: number;
  connectS: number;
  /** The simulated clients' CPU over the loaded phase, as a share of one core, and their memory. */
  clientCpuCores: number;
  clientRssMiB: number;
}

/**
 * 10,000 SIMULATED workers (bench/lib/scale-fleet.ts: real WebSocket clients speaking the
 * worker protocol, CLIENTS processes) across 1, 2 and 3 `crowdbake master` processes on one
 * PostgreSQL on this machine. Per point: idle memory per 1,000 connected workers, assignment
 * latency at light load and under load, builds/s, CPU per build (masters and PostgreSQL).
 */
export async function run(): Promise<BenchResult[]> {
  const pgUrl = postgresUrl();
  const dbs = new TestDatabases(pgUrl);
  onCleanup(() => dbs.dropAll());
  const points: ScalePoint[] = [];
  const out: BenchResult[] = [];
  for (const w of WORKERS) {
    for (const m of MASTERS) {
      console.log(`  … ${w} simulated workers, ${m} master${m > 1 ? 's' : ''}`);
      const p = await measure(await dbs.create(), m, w);
      points.push(p);
      out.push(...rows(p));
      reportPartial(out);
    }
  }
  const byMasters = (f: (p: ScalePoint) => number) => MASTERS.map((m) => ({ label: `${m} master${m > 1 ? 's' : ''}`, points: points.filter((p) => p.masters === m).map((p) => [p.workers, f(p)] as [number, number]) }));
  const charts: { file: string; chart: Chart }[] = [
    { file: 'scale-latency-p99-vs-workers.png', chart: { title: 'Assignment latency p99 (under load) vs simulated workers', x: 'simulated workers', y: 'ms', logX: true, series: byMasters((p) => p.loadP99) } },
    { file: 'scale-throughput-vs-workers.png', chart: { title: 'Builds/s vs simulated workers (PostgreSQL)', x: 'simulated workers', y: 'builds/s', logX: true, series: byMasters((p) => p.rate) } },
    { file: 'scale-memory-per-1000-vs-workers.png', chart: { title: 'Master RSS per 1,000 idle workers', x: 'simulated workers', y: 'MiB', logX: true, series: byMasters((p) => p.rssPer1000) } },
    { file: 'scale-cpu-per-build-vs-workers.png', chart: { title: 'Masters\' CPU per build vs simulated workers', x: 'simulated workers', y: 'ms of CPU per build', logX: true, series: byMasters((p) => p.cpuMsPerBuild) } },
  ];
  if (WORKERS.length > 1) {
    try {
      await renderPngs(charts.map((c) => ({ ...c, file: join(ROOT, 'bench', 'results', c.file) })));
      out.push({ name: 'scale: plots', value: charts.length, unit: 'PNG', note: charts.map((c) => `results/${c.file}`).join(', ') });
    } catch (e) {
      out.push({ name: 'scale: plots', value: NaN, unit: '', note: `Chromium could not render them: ${(e as Error).message}` });
    }
  }
  return out;
}

function rows(p: ScalePoint): BenchResult[] {
  const at = `${p.workers} workers, ${p.masters} master${p.masters > 1 ? 's' : ''}`;
  const big = p.workers >= 10_000;
  return [
    { name: `scale: assignment p99, light load, ${at}`, value: p.latencyP99, unit: 'ms', ...(big ? { goal: '<= 50' } : {}), note: `p50 ${p.latencyP50.toFixed(1)} ms; ${SAMPLES} builds one every 20 ms; POST sent → assign received` },
    { name: `scale: assignment p99, under load, ${at}`, value: p.loadP99, unit: 'ms', ...(big ? { goal: '<= 50' } : {}), note: `p50 ${p.loadP50.toFixed(1)} ms; ${BUILDS} builds from 8 submitters` },
    { name: `scale: builds/s, ${at}`, value: p.rate, unit: 'builds/s', note: `masters' CPU ${p.cpuMsPerBuild.toFixed(2)} ms/build, PostgreSQL ${p.pgCpuMsPerBuild.toFixed(2)} ms/build and ${p.xactsPerBuild.toFixed(1)} transactions/build (the masters' and the bench's API reads included); the ${CLIENTS} client processes used ${p.clientCpuCores.toFixed(2)} cores (${p.clientRssMiB.toFixed(0)} MiB)` },
    { name: `scale: master RSS per 1,000 idle workers, ${at}`, value: p.rssPer1000, unit: 'MiB', ...(big ? { goal: '<= 20' } : {}), note: `heap ${p.heapPer1000.toFixed(1)} MiB per 1,000; RSS before the workers ${p.rssIdle.toFixed(0)} MiB; ${p.workers} connected in ${p.connectS.toFixed(1)} s` },
  ];
}

async function measure(dbUrl: string, masterCount: number, workerCount: number): Promise<ScalePoint> {
  const dir = benchDir('scale');
  const configDir = join(dir, 'config');
  mkdirSync(join(configDir, 'builders'), { recursive: true });
  writeFileSync(join(configDir, 'builders', 'trivial.yml'), BUILDER);
  // Tokens minted in bulk straight into the store (what `crowdbake token create` does, one
  // row each), 50 at a time, before any master starts; the migrations run on this open.
  const names = Array.from({ length: workerCount }, (_, i) => `sim-${i + 1}`);
  const tokens: string[] = [];
  const store = await openStore(dbUrl);
  try {
    for (let i = 0; i < names.length; i += 50) tokens.push(...await Promise.all(names.slice(i, i + 50).map((n) => createWorkerToken(store, n, [], 1))));
  } finally {
    await store.close();
  }
  const masters: Master[] = [];
  const fleets: Fleet[] = [];
  try {
    for (let i = 0; i < masterCount; i++) masters.push(await startMaster(configDir, join(dir, `data${i}`), dbUrl));
    await sleep(2000);
    const before = await Promise.all(masters.map((m) => memoryAfterGc(m)));
    const c0 = wallMs();
    const per = Math.ceil(workerCount / CLIENTS);
    const wsUrls = masters.map((m) => `${m.url.replace(/^http/, 'ws')}/api/v1/worker`);
    for (let c = 0; c < CLIENTS && c * per < workerCount; c++) {
      const slice = names.slice(c * per, (c + 1) * per).map((n, j) => [n, tokens[c * per + j]!, c * per + j] as [string, string, number]);
      fleets.push(startFleet(dir, c, wsUrls, slice));
    }
    await Promise.all(fleets.map((f) => ready(f.child, 60_000 + workerCount * 20)));
    const connectS = (wallMs() - c0) / 1000;
    // Idle: everyone connected, nothing queued, a heartbeat or two.
    await sleep(5000);
    const after = await Promise.all(masters.map((m) => memoryAfterGc(m)));
    const perMaster = workerCount / masterCount / 1000;
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const rssPer1000 = avg(after.map((a, i) => (a.rss - before[i]!.rss) / perMaster));
    const heapPer1000 = avg(after.map((a, i) => (a.heap - before[i]!.heap) / perMaster));
    await Promise.all(fleets.map((f) => f.dump()));

    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    onCleanup(async () => { agent.destroy(); });
    const force = (k: number) => post(masters[k % masters.length]!, agent);
    const collect = async () => new Map((await Promise.all(fleets.map((f) => f.dump()))).flatMap((d) => d.assigned));

    // Light load: one build every 20 ms.
    const sent = new Map<number, number>();
    for (let i = 0; i < SAMPLES; i++) {
      const t = wallMs();
      sent.set(await force(i), t);
      await sleep(Math.max(0, 20 - (wallMs() - t)));
    }
    await drained(masters[0]!, 60_000);
    const light = latencies(sent, await collect());

    // Under load: BUILDS builds from 8 submitters, spread over the masters.
    const x0 = await transactions(dbUrl);
    const cpu0 = masters.map((m) => cpuMsOf(m.pid));
    const pg0 = postgresCpuMs();
    const fleetCpu0 = (await Promise.all(fleets.map((f) => f.dump()))).reduce((a, d) => a + d.cpuMs, 0);
    const loadSent = new Map<number, number>();
    const t0 = wallMs();
    let n = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (n < BUILDS) {
        const k = n++;
        const t = wallMs();
        loadSent.set(await force(k), t);
      }
    }));
    await drained(masters[0]!, 60_000 + BUILDS * 20);
    const end = await lastFinishedAt(masters[0]!, Math.min(1000, BUILDS));
    const cpuMs = masters.reduce((a, m, i) => a + cpuMsOf(m.pid) - cpu0[i]!, 0);
    const pgMs = postgresCpuMs() - pg0;
    // PostgreSQL reports a backend's counts within a second or so of its last statement.
    await sleep(1500);
    const xacts = (await transactions(dbUrl)) - x0;
    const dumps = await Promise.all(fleets.map((f) => f.dump()));
    const fleetCpu = dumps.reduce((a, d) => a + d.cpuMs, 0) - fleetCpu0;
    const load = latencies(loadSent, new Map(dumps.flatMap((d) => d.assigned)));
    const seconds = (end - t0) / 1000;
    return {
      masters: masterCount, workers: workerCount,
      latencyP50: percentile(light, 50), latencyP99: percentile(light, 99),
      loadP50: percentile(load, 50), loadP99: percentile(load, 99),
      rate: BUILDS / seconds, cpuMsPerBuild: cpuMs / BUILDS, pgCpuMsPerBuild: pgMs / BUILDS, xactsPerBuild: xacts / BUILDS,
      rssPer1000, heapPer1000, rssIdle: avg(before.map((b) => b.rss)), connectS,
      clientCpuCores: fleetCpu / ((wallMs() - t0)), clientRssMiB: dumps.reduce((a, d) => a + d.rssMiB, 0),
    };
  } finally {
    for (const f of fleets) { f.child.stdin!.end(); await stop(f.child); }
    await Promise.all(masters.map((m) => stop(m.child, 15_000)));
  }
}

/** POST sent → assign received, for every build the fleet saw; a build never assigned is an error. */
function latencies(sent: Map<number, number>, got: Map<number, number>): number[] {
  const out: number[] = [];
  for (const [id, t] of sent) {
    const at = got.get(id);
    if (at === undefined) throw new Error(`build ${id} finished but no simulated worker reported its assignment`);
    out.push(at - t);
  }
  return out;
}

/** The test PostgreSQL's URL: $CROWDBAKE_TEST_POSTGRES, else scripts/start-postgres.sh starts Debian's cluster and prints it. */
function postgresUrl(): string {
  if (process.env.CROWDBAKE_TEST_POSTGRES) return process.env.CROWDBAKE_TEST_POSTGRES;
  const line = execFileSync('bash', [join(ROOT, 'scripts', 'start-postgres.sh')], { stdio: ['ignore', 'pipe', 'inherit'] }).toString();
  const m = /CROWDBAKE_TEST_POSTGRES=(\S+)/.exec(line);
  if (!m) throw new Error(`scripts/start-postgres.sh printed no URL: ${line}`);
  return m[1]!;
}

/** Transactions committed so far in the database `url` names (pg_stat_database). */
async function transactions(url: string): Promise<number> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ n: string }>('SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()');
    return Number(r.rows[0]?.n ?? NaN);
  } finally {
    await c.end();
  }
}

/** CPU (user + system, ms) of every process named postgres on this machine (the server and its backends). */
function postgresCpuMs(): number {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') total += cpuMsOf(Number(pid));
    } catch { /* gone */ }
  }
  return total;
}

async function startMaster(configDir: string, dataDir: string, storeUrl: string): Promise<Master> {
  mkdirSync(dataDir, { recursive: true });
  const prof = process.env.BENCH_CPU_PROF;
  const heap = process.env.BENCH_HEAP_DIR;
  const nodeArgs = [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), ...(heap ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${heap}`] : [])];
  // The inspector (on loopback, a random port) lets the bench collect garbage before it reads the master's memory.
  nodeArgs.push('--inspect=127.0.0.1:0');
  const child = tracked(process.execPath, [...nodeArgs, CLI, 'master', '--config', configDir, '--data', dataDir, '--listen', '127.0.0.1:0', '--store', storeUrl],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const m = /API at (http:\/\/[^/\s]+)\//.exec(out);
    const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(out)?.[1];
    if (m && inspector) return { url: m[1]!, pid: child.pid!, admin: readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(), child, output: () => out, inspector };
    if (child.exitCode !== null) throw new Error(`the master exited: ${out}`);
    if (Date.now() > deadline) throw new Error(`the master did not start: ${out}`);
    await sleep(20);
  }
}

function startFleet(dir: string, index: number, urls: string[], workers: [string, string, number][]): Fleet {
  const file = join(dir, `fleet-${index}.json`);
  writeFileSync(file, JSON.stringify({ urls, workers, inFlight: 50 }), { mode: 0o600 });
  const child = tracked(process.execPath, [join(ROOT, 'dist', 'bench', 'lib', 'scale-fleet.js')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_SCALE_FLEET: `@${file}` },
  });
  const lines: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  let buf = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith('{') && waiting.length) waiting.shift()!(line);
      else lines.push(line);
    }
  });
  (child as ChildProcess & { lines: string[] }).lines = lines;
  return {
    child,
    dump: () => new Promise((ok) => { waiting.push((l) => ok(JSON.parse(l))); child.stdin!.write('dump\n'); }),
  };
}

async function ready(child: ChildProcess, timeoutMs: number): Promise<void> {
  const lines = (child as ChildProcess & { lines: string[] }).lines;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const failed = lines.find((l) => l.startsWith('failed'));
    if (failed) throw new Error(`a simulated worker was refused: ${failed}`);
    if (lines.includes('ready')) return;
    if (child.exitCode !== null) throw new Error(`the simulated workers exited with ${child.exitCode}`);
    if (Date.now() > end) throw new Error(`the simulated workers did not all connect within ${timeoutMs} ms`);
    await sleep(50);
  }
}

function post(m: Master, agent: Agent): Promise<number> {
  return new Promise<number>((ok, fail) => {
    const req = request(`${m.url}/api/v1/builders/trivial/builds`, {
      method: 'POST', agent, headers: { authorization: `Bearer ${m.admin}`, 'content-type': 'application/json', 'content-length': 2 },
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => {
        const j = JSON.parse(body) as { id: number; error?: string };
        if (res.statusCode !== 201) fail(new Error(`force trivial on ${m.url}: ${res.statusCode} ${j.error}`));
        else ok(j.id);
      });
    });
    req.on('error', fail);
    req.end('{}');
  });
}

async function get<T>(m: Master, path: string): Promise<T> {
  const r = await fetch(`${m.url}${path}`, { headers: { authorization: `Bearer ${m.admin}` } });
  if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}

/**
 * The master's memory after a full garbage collection (through its inspector: CDP's
 * HeapProfiler.collectGarbage, then process.memoryUsage() in the master): RSS and V8's used heap, MiB.
 */
async function memoryAfterGc(m: Master): Promise<{ rss: number; heap: number }> {
  const ws = new WebSocket(m.inspector);
  await new Promise<void>((ok, fail) => { ws.once('open', () => ok()); ws.once('error', fail); });
  let id = 0;
  const call = (method: string, params: object = {}): Promise<{ result?: { result?: { value?: string } } }> => new Promise((ok, fail) => {
    const my = ++id;
    const onMessage = (data: WebSocket.RawData): void => {
      const msg = JSON.parse(data.toString()) as { id?: number; error?: { message: string } };
      if (msg.id !== my) return;
      ws.off('message', onMessage);
      if (msg.error) fail(new Error(`${method}: ${msg.error.message}`));
      else ok(msg as never);
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ id: my, method, params }));
  });
  try {
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    const r = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const u = JSON.parse(r.result?.result?.value ?? 'null') as { rss: number; heapUsed: number } | null;
    if (!u) throw new Error('the master\'s inspector did not return process.memoryUsage()');
    return { rss: u.rss / 2 ** 20, heap: u.heapUsed / 2 ** 20 };
  } finally {
    ws.close();
  }
}

async function drained(m: Master, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const [q, r] = await Promise.all([get<unknown[]>(m, '/api/v1/builds?state=queued&limit=1'), get<unknown[]>(m, '/api/v1/builds?state=running&limit=1')]);
    if (q.length === 0 && r.length === 0) return;
    if (Date.now() > end) throw new Error(`builds still queued or running after ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function lastFinishedAt(m: Master, n: number): Promise<number> {
  const rows = await get<BuildView[]>(m, `/api/v1/builds?state=finished&limit=${n}`);
  return Math.max(...rows.map((b) => Date.parse(b.finishedAt!)));
}
