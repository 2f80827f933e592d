import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Everything a scenario starts is registered here and stopped by pid when the scenario ends,
 * fails, or is interrupted (SIGTERM/SIGINT from bench/run.mjs). Temp dirs are removed too.
 */
const children = new Set<ChildProcess>();
const dirs = new Set<string>();
const cleanups = new Set<() => Promise<void>>();
let partial: unknown[] = [];

/** Results measured so far: kept if the scenario is stopped before it returns (its budget ran out). */
export function reportPartial(results: unknown[]): void {
  partial = results;
}

export function partialResults(): unknown[] {
  return partial;
}

export function tracked(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(cmd, args, opts);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function benchDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `crowdbake-bench-${prefix}-`));
  dirs.add(d);
  return d;
}

/** Runs at the end whatever happens (for things with their own stop, such as the BuildBot lab). */
export function onCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

export async function stop(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

export async function stopEverything(): Promise<void> {
  for (const fn of [...cleanups]) await fn().catch((e: Error) => console.error(`  cleanup: ${e.message}`));
  cleanups.clear();
  await Promise.all([...children].map((c) => stop(c)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

export interface Memory {
  /** Resident set: counts every mapped page, the shared `node`/`python3` binary included. */
  rss: number;
  /** RssAnon: the process's own heap and stacks. */
  anon: number;
  /** Proportional set size (smaps_rollup): shared pages divided among the processes mapping them. */
  pss: number;
}

/** Resident, private (RssAnon) and proportional (PSS) memory of a process, in MiB. */
export function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (text: string, key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  let pss = NaN;
  try { pss = kb(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'), 'Pss') / 1024; } catch { /* kernel without smaps_rollup */ }
  return { rss: kb(status, 'VmRSS') / 1024, anon: kb(status, 'RssAnon') / 1024, pss };
}

/** CPU time (user + system) a process has used so far, in ms. */
export function cpuMsOf(pid: number): number {
  // Each thread's time on a CPU in ns (/proc/PID/task/TID/schedstat), summed: /proc/PID/stat
  // counts in clock ticks of 10 ms, too coarse for a build's 50 ms. A thread that ends takes
  // its time out of the sum; Node's threads (main, V8's, libuv's pool) live as long as the process.
  let ns = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try { ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]); } catch { /* the thread ended */ }
    }
  } catch { /* no schedstat here */ }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  return ns > 0 ? ns / 1e6 : ticks;
}

/** Samples a process's RSS every `everyMs` until stopped. */
export function sampleMemory(pid: number, everyMs = 50): { stop(): { samples: number[]; min: number; max: number; first: number; last: number } } {
  const samples: number[] = [];
  const take = (): void => { try { samples.push(memoryOf(pid).rss); } catch { /* exited */ } };
  take();
  const t = setInterval(take, everyMs);
  return {
    stop: () => {
      clearInterval(t);
      take();
      return { samples, min: Math.min(...samples), max: Math.max(...samples), first: samples[0]!, last: samples[samples.length - 1]! };
    },
  };
}

/** Wall-clock time in ms with sub-millisecond precision (comparable with `date +%s%N` on this machine). */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}
