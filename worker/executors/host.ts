import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import type { EnvironmentSpec } from '../../protocol/build-spec.js';
import type { Availability, Executor, Sandbox, SandboxRequest, StepOutcome, StepRequest } from './executor.js';
import { reapedChildrenCpuMs } from '../cpu-time.js';
import { errorOutcome, FreezeGate, invalidEnv, supervise, type Supervised } from './step-support.js';

/**
 * Runs steps directly on this computer, in the workdir, as the worker's user. NOT isolated:
 * opt-in only, for a developer's own trusted builds. Each step gets its own process group so
 * timeouts, cancel and freeze reach everything it started.
 *
 * Limits: only wall time is enforced here. cpus, memory, pids and disk limits are NOT
 * enforced on the host executor, and the environment's `base` is ignored.
 */
export class HostExecutor implements Executor {
  readonly kind = 'host' as const;
  /** Nothing isolates a host build, so its empty directories may be kept for the next (build-dirs.ts). */
  readonly keepsBuildDirs = true;

  async isAvailable(): Promise<Availability> {
    if (process.platform === 'win32') return { ok: false, reason: 'the host executor needs POSIX process groups (not Windows)' };
    return { ok: true };
  }

  /** Step process groups die with their step; nothing survives a crash that we could find again. */
  async cleanupStale(): Promise<number> {
    return 0;
  }

  async prepare(environment: EnvironmentSpec, progress: (line: string) => void): Promise<void> {
    if (environment.setup.length > 0) {
      throw new Error(`setup steps are not supported yet (environment.setup has ${environment.setup.length})`);
    }
    progress(`host executor: base "${environment.base}" is ignored, steps run directly on this computer; only time limits are enforced`);
  }

  async open(request: SandboxRequest): Promise<Sandbox> {
    const workdir = resolve(request.workdir);
    // The build's own directory, just made by the runner: a synchronous stat (microseconds) rather
    // than a round trip through libuv's thread pool before the first step (about 0.3 ms).
    let st: Stats | null = null;
    try { st = statSync(workdir); } catch { /* missing: said below */ }
    if (!st?.isDirectory()) throw new Error(`workdir ${workdir} is not a directory`);
    return new HostSandbox(workdir);
  }
}

class HostSandbox implements Sandbox {
  private readonly gate = new FreezeGate();
  private destroyed = false;
  private current: { child: ChildProcess; supervised: Supervised } | undefined;
  private cpu = 0;

  constructor(private readonly workdir: string) {}

  async run(step: StepRequest): Promise<StepOutcome> {
    if (this.destroyed) return errorOutcome('the sandbox was already destroyed');
    if (this.current) return errorOutcome('another step is still running in this sandbox');
    const badEnv = invalidEnv(step.env);
    if (badEnv) return errorOutcome(badEnv);
    // A step started while frozen waits for thaw (its timer has not started either).
    while (this.gate.frozen && !step.signal.aborted && !this.destroyed) await this.gate.wait(step.signal);
    if (step.signal.aborted) return { exitCode: null, stopped: 'cancelled', message: 'step was cancelled before it started' };
    if (this.destroyed) return errorOutcome('the sandbox was destroyed before the step started');
    if (this.current) return errorOutcome('another step is still running in this sandbox');

    const [cmd, ...args] = typeof step.run === 'string' ? ['/bin/sh', '-c', step.run] : step.run;
    if (cmd === undefined) return errorOutcome('the step has an empty command');
    const env = { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: this.workdir, ...step.env };
    const cpuBefore = reapedChildrenCpuMs();
    const child = spawn(cmd, args, { cwd: this.workdir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = child.pid;
    const supervised = supervise(child, step, {
      kill: () => { if (pid) killTree(pid, 'SIGKILL'); },
      // The step is over: whatever it left running in its group goes too. Only the group: the
      // step's own process is gone, so /proc no longer links its children to it (they belong to
      // init now), and a scan would cost a read of every process's stat per step for nothing.
      onExit: () => { if (pid) killGroup(pid, 'SIGKILL'); },
      spawnError: (e) => `could not start ${cmd}: ${e.code === 'ENOENT' ? 'no such file or command' : e.message}`,
    });
    this.current = { child, supervised };
    try {
      const r = await supervised.done;
      if (r.stopped) return { exitCode: null, stopped: r.stopped, message: r.message };
      if (this.destroyed) return { exitCode: r.code, stopped: 'error', message: 'the sandbox was destroyed while the step ran' };
      if (r.code === null) return { exitCode: null, stopped: 'error', message: `step was killed by ${r.signal ?? 'a signal'}` };
      return { exitCode: r.code, stopped: null, message: null };
    } finally {
      this.current = undefined;
      const cpuAfter = reapedChildrenCpuMs();
      if (cpuBefore !== null && cpuAfter !== null) this.cpu += Math.max(0, cpuAfter - cpuBefore);
    }
  }

  /** The steps' process trees, as reaped (other children reaped meanwhile, e.g. another build's, count too). */
  async cpuMs(): Promise<number | null> {
    return reapedChildrenCpuMs() === null ? null : this.cpu;
  }

  async freeze(): Promise<void> {
    if (this.gate.frozen || this.destroyed) return;
    this.gate.set(true);
    if (!this.current) return;
    this.current.supervised.timer.pause();
    if (this.current.child.pid) killTree(this.current.child.pid, 'SIGSTOP');
  }

  async thaw(): Promise<void> {
    if (!this.gate.frozen) return;
    this.gate.set(false);
    if (!this.current) return;
    if (this.current.child.pid) killTree(this.current.child.pid, 'SIGCONT');
    this.current.supervised.timer.resume();
  }

  /** Kills a running step's tree; the workdir belongs to the runner and stays. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    this.gate.release();
    const pid = this.current?.child.pid;
    if (pid) {
      killTree(pid, 'SIGKILL');
      killTree(pid, 'SIGCONT');
    }
  }
}

/**
 * Signals the step's process group and, on Linux, every descendant found through /proc, so
 * that a grandchild which moved to its own group or session (setsid) is reached as well.
 * Descendants are collected before the group is signalled, while they are still linked.
 */
export function killTree(pid: number, signal: NodeJS.Signals): void {
  const descendants = process.platform === 'linux' ? findDescendants(pid) : [];
  killGroup(pid, signal);
  for (const p of descendants) {
    try { process.kill(p, signal); } catch { /* already gone */ }
  }
}

/** Signals the process group whose leader was `pid`. */
function killGroup(pid: number, signal: NodeJS.Signals): void {
  try { process.kill(-pid, signal); } catch { /* group already gone */ }
}

function findDescendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try { entries = readdirSync('/proc'); } catch { return []; }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try { text = readFileSync(`/proc/${name}/stat`, 'utf8'); } catch { continue; }
    // pid (comm) state ppid ...: comm may contain spaces and parentheses, so split after the last ')'.
    const ppid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const p = queue.pop()!;
    for (const c of children.get(p) ?? []) { out.push(c); queue.push(c); }
  }
  return out;
}
