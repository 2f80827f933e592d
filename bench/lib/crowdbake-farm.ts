import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { BuildView } from '../../protocol/api.js';
import { openStore } from '../../master/store/open-store.js';
import { createWorkerToken } from '../../master/tokens.js';
import { benchDir, stop, tracked, wallMs } from './procs.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(ROOT, 'bin', 'crowdbake.js');

/** Builder files the bench uses; all run on the host executor (like BuildBot's stock worker). */
export const BUILDERS: Record<string, string> = {
  trivial: 'description: one trivial step\nrequires: { executor: host }\nsteps:\n  - { name: echo, run: [echo, hi] }\n',
  stamp: 'description: prints the time its step started (ns)\nrequires: { executor: host }\nsteps:\n  - { name: stamp, run: [date, "+%s%N"] }\n',
  loud: 'description: 200,000 lines of 100 bytes (20 MB) on stdout\nrequires: { executor: host }\nsteps:\n'
    + `  - { name: loud, run: [sh, -c, "yes '${'x'.repeat(99)}' | head -n 200000"] }\n`,
};

export interface Farm {
  url: string;
  pid: number;
  dataDir: string;
  adminToken: string;
  /** Worker tokens made before the master started, by name. */
  tokens: Map<string, string>;
  force(builder: string): Promise<number>;
  get<T>(path: string): Promise<T>;
  /** Resolves once nothing is queued or running (polls every `everyMs`). */
  drained(timeoutMs: number, everyMs?: number): Promise<number>;
  /**
   * Polls the build until it is finished, every `pollMs` (default 5). The figures come from the
   * master's own timestamps, so polling more often only costs: one poll is 0.2–0.5 ms of the
   * master's CPU and 0.4–0.9 ms of the poller's (`node bench/poll-cost.mjs`), and a 100 ms build
   * polled every 5 ms (about 17 polls) took about 10 ms of the machine's CPU from the build.
   * A long build is polled every 50 ms, as BuildBot's side is.
   */
  waitFinished(id: number, timeoutMs?: number, pollMs?: number): Promise<BuildView>;
  /** The latest finishedAt among the last `n` builds (ms since the epoch). */
  lastFinishedAt(n: number): Promise<number>;
  waitWorkers(count: number, timeoutMs?: number): Promise<void>;
  startWorker(name: string, extra?: string[]): Promise<ChildProcess>;
  stop(): Promise<void>;
}

/**
 * A real `crowdbake master` process on 127.0.0.1 (its own SQLite store, the bench builders),
 * with `workerNames` tokens made beforehand. BENCH_CPU_PROF=DIR starts it under `--cpu-prof`
 * (BENCH_CPU_PROF_INTERVAL=µs sets the sampling interval).
 */
export async function startFarm(workerNames: string[]): Promise<Farm> {
  const dir = benchDir('master');
  const configDir = join(dir, 'config');
  const dataDir = join(dir, 'data');
  mkdirSync(join(configDir, 'builders'), { recursive: true });
  mkdirSync(dataDir, { recursive: true });
  for (const [name, yaml] of Object.entries(BUILDERS)) writeFileSync(join(configDir, 'builders', `${name}.yml`), yaml);
  const tokens = new Map<string, string>();
  const store = await openStore(`sqlite:${join(dataDir, 'crowdbake.db')}`);
  try {
    for (const n of workerNames) tokens.set(n, await createWorkerToken(store, n, []));
  } finally {
    await store.close();
  }
  const prof = process.env.BENCH_CPU_PROF;
  // BENCH_CPU_PROF_INTERVAL=µs: a finer sampling than V8's 1 ms (250 for a 100 ms build).
  const interval = process.env.BENCH_CPU_PROF_INTERVAL;
  const nodeArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`, ...(interval ? [`--cpu-prof-interval=${interval}`] : [])] : [];
  const master = tracked(process.execPath, [...nodeArgs, CLI, 'master', '--config', configDir, '--data', dataDir, '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  master.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  master.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const deadline = Date.now() + 30_000;
  let url = '';
  while (!url) {
    const m = /API at (http:\/\/[^/\s]+)\//.exec(out);
    if (m) url = m[1]!;
    else if (master.exitCode !== null) throw new Error(`the master exited: ${out}`);
    else if (Date.now() > deadline) throw new Error(`the master did not start: ${out}`);
    else await sleep(20);
  }
  const adminToken = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const get = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${url}${path}`);
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  };
  const workers = new Set<ChildProcess>();
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const farm: Farm = {
    url, pid: master.pid!, dataDir, adminToken, tokens, get,
    // node:http with keep-alive: a lighter client than fetch, so the submitters cost the shared CPUs less.
    force: (builder) => new Promise<number>((ok, fail) => {
      const req = request(`${url}/api/v1/builders/${builder}/builds`, {
        method: 'POST', agent, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', 'content-length': 2 },
      }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { body += c; });
        res.on('end', () => {
          const j = JSON.parse(body) as { id: number; error?: string };
          if (res.statusCode !== 201) fail(new Error(`force ${builder}: ${res.statusCode} ${j.error}`));
          else ok(j.id);
        });
      });
      req.on('error', fail);
      req.end('{}');
    }),
    drained: async (timeoutMs, everyMs = 20) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const [q, r] = await Promise.all([get<unknown[]>('/api/v1/builds?state=queued&limit=1'), get<unknown[]>('/api/v1/builds?state=running&limit=1')]);
        if (q.length === 0 && r.length === 0) return wallMs();
        if (Date.now() > end) throw new Error(`builds still queued or running after ${timeoutMs} ms`);
        await sleep(everyMs);
      }
    },
    waitFinished: async (id, timeoutMs = 60_000, pollMs = 5) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const b = await get<BuildView>(`/api/v1/builds/${id}`);
        if (b.state === 'finished') return b;
        if (Date.now() > end) throw new Error(`build ${id} did not finish within ${timeoutMs} ms`);
        await sleep(pollMs);
      }
    },
    lastFinishedAt: async (n) => {
      const rows = await get<BuildView[]>(`/api/v1/builds?state=finished&limit=${Math.min(1000, n)}`);
      return Math.max(...rows.map((b) => Date.parse(b.finishedAt!)));
    },
    waitWorkers: async (count, timeoutMs = 60_000) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const ws = await get<{ connected: boolean }[]>('/api/v1/workers');
        if (ws.filter((w) => w.connected).length >= count) return;
        if (Date.now() > end) throw new Error(`fewer than ${count} workers connected after ${timeoutMs} ms`);
        await sleep(50);
      }
    },
    startWorker: async (name, extra = []) => {
      const token = tokens.get(name);
      if (!token) throw new Error(`no token for ${name}`);
      const child = tracked(process.execPath, [...nodeArgs, CLI, 'worker', '--master', url, '--token', token, '--data', join(dir, 'workers', name),
        '--executor', 'host', '--when', 'always', '--idle-source', 'none', ...extra], { stdio: 'ignore' });
      workers.add(child);
      return child;
    },
    stop: async () => {
      agent.destroy();
      await Promise.all([...workers].map((w) => stop(w)));
      await stop(master, 15_000);
    },
  };
  return farm;
}

/** Forces `total` builds of `builder` from `submitters` concurrent clients; resolves with their ids. */
export async function submitAll(force: (builder: string) => Promise<number>, builder: string, total: number, submitters: number): Promise<number[]> {
  const ids: number[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: submitters }, async () => {
    while (next < total) {
      next++;
      ids.push(await force(builder));
    }
  }));
  return ids;
}

export interface SimFleet {
  pid: number;
  /** Every simulated worker starts accepting builds at once. */
  go(): void;
  stop(): Promise<void>;
}

/** Starts SIMULATED workers (see sim-fleet.ts) in their own process for these token names; resolves once all are welcomed. */
export async function startSimFleet(farm: Farm, names: string[]): Promise<SimFleet> {
  const url = `${farm.url.replace(/^http/, 'ws')}/api/v1/worker`;
  const child = tracked(process.execPath, [join(ROOT, 'dist', 'bench', 'lib', 'sim-fleet.js')], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, BENCH_SIM: JSON.stringify({ url, workers: names.map((n) => [n, farm.tokens.get(n)]) }) },
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  const end = Date.now() + 60_000;
  while (!out.includes('ready')) {
    if (child.exitCode !== null || Date.now() > end) throw new Error(`the simulated workers did not start: ${err}`);
    await sleep(20);
  }
  return {
    pid: child.pid!,
    go: () => { child.stdin!.write('go\n'); },
    stop: async () => { child.stdin!.end(); await stop(child); },
  };
}
