import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { cgroupCpuMs } from '../cpu-time.js';
import { diskFull } from './disk-limit.js';
import type { Sandbox, StepOutcome, StepRequest } from './executor.js';
import { podman, removeContainers, spawnErrorMessage, spawnPodman } from './podman.js';
import { errorOutcome, formatBytes, FreezeGate, invalidEnv, supervise, type StepChild, type Supervised } from './step-support.js';

/**
 * How a ContainerSandbox reaches its container: podman commands (PodmanOps, below), or the
 * fast path's in-container agent and cgroup files (fast/fast-ops.ts).
 */
export interface ContainerOps {
  /** Why no step can run any more (e.g. the agent is gone), or null. */
  problem(): string | null;
  /** Starts one step in the sandbox's step directory (/work, or /build/src) with `env` added; throws when the step cannot be expressed. */
  exec(argv: string[], env: Record<string, string>): { child: StepChild; spawnError: (e: NodeJS.ErrnoException) => string };
  /** Stops every process in the container (cgroup freezer); resolves once they are stopped. */
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** Kills every process in the container, also when frozen. */
  kill(): Promise<void>;
  /** Optional: caps the container's CPU quota at `cpus` cores (null: its own quota again); see Freezable.limitCpu. */
  limitCpu?(cpus: number | null): Promise<void>;
  /** Removes the container and whatever runs in it. */
  remove(): Promise<void>;
}

/** The plain path: one `podman exec` per step, `podman pause`, `podman kill`, `podman rm`. */
export class PodmanOps implements ContainerOps {
  /** `cwd`: where steps start (/work, or /build/src when the build has a build directory). */
  constructor(readonly name: string, readonly cwd = '/work') {}

  problem(): null {
    return null;
  }

  exec(argv: string[], env: Record<string, string>): ReturnType<ContainerOps['exec']> {
    const envFlags = Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
    const args = ['exec', '--workdir', this.cwd, ...envFlags, this.name, ...argv];
    return { child: spawnPodman(args), spawnError: (e) => spawnErrorMessage(e, args) };
  }

  async freeze(): Promise<void> {
    await podman(['pause', this.name], { timeoutMs: 30_000 });
  }

  async thaw(): Promise<void> {
    await podman(['unpause', this.name], { timeoutMs: 30_000 });
  }

  async kill(): Promise<void> {
    const r = await podman(['kill', '--signal', 'KILL', this.name], { allowFailure: true, timeoutMs: 30_000 });
    if (r.code !== 0 && (await containerState(this.name)) === 'running') {
      throw new Error(`podman kill ${this.name} failed: ${r.stderr.trim()}`);
    }
  }

  async remove(): Promise<void> {
    await removeContainers([this.name]);
  }
}

/** `podman inspect`'s status of the container (running, paused, exited, …), or null when it is gone. */
export async function containerState(name: string): Promise<string | null> {
  const r = await podman(['inspect', '--format', '{{.State.Status}}', name], { allowFailure: true, timeoutMs: 30_000 });
  return r.code === 0 ? r.stdout.trim() : null;
}

/** What a ContainerSandbox checks after each step, and gives back when it is destroyed. */
export interface SandboxGuards {
  memoryBytes: number | undefined;
  /** The workdir when it is a filesystem of its own holding at most `bytes` (the disk limit). */
  disk: { dir: string; bytes: number } | null;
  /** Once the container is removed, the workdir's files (owned by the container's mapped uids) go back to this user. */
  ownerAfter: { dir: string; uid: number; gid: number } | null;
}

/** One running build container; steps run in it one at a time, through its ContainerOps. */
export class ContainerSandbox implements Sandbox {
  private readonly gate = new FreezeGate();
  /** Set once the container was killed (timeout, cancel) or died: later steps cannot run. */
  private broken: string | null = null;
  private destroyed = false;
  private destroying: Promise<void> | undefined;
  private current: Supervised | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  /** Present when the container's CPU quota can be written (the fast path with its cgroup); else the gate freezes instead. */
  readonly limitCpu?: (cpus: number | null) => Promise<void>;

  private constructor(
    readonly name: string,
    readonly ops: ContainerOps,
    private readonly guards: SandboxGuards,
    private readonly oomFile: string | null,
    private oomKills: number | null,
  ) {
    const limit = ops.limitCpu?.bind(ops);
    if (limit) this.limitCpu = (cpus) => this.serial(async () => { if (!this.destroyed && !this.broken) await limit(cpus); });
  }

  static async start(name: string, ops: ContainerOps, guards: SandboxGuards, oomFile: string | null): Promise<ContainerSandbox> {
    return new ContainerSandbox(name, ops, guards, oomFile, await readOomKills(oomFile));
  }

  async run(step: StepRequest): Promise<StepOutcome> {
    if (this.destroyed) return errorOutcome('the sandbox was already destroyed');
    if (this.broken) return errorOutcome(this.broken);
    if (this.current) return errorOutcome('another step is still running in this sandbox');
    const problem = this.ops.problem();
    if (problem) return errorOutcome((this.broken = problem));
    const badEnv = invalidEnv(step.env);
    if (badEnv) return errorOutcome(badEnv);
    // A step started while frozen waits for thaw (`podman exec` fails on a paused container).
    while (this.gate.frozen && !step.signal.aborted && !this.destroyed) await this.gate.wait(step.signal);
    if (step.signal.aborted) return { exitCode: null, stopped: 'cancelled', message: 'step was cancelled before it started' };
    if (this.destroyed) return errorOutcome('the sandbox was destroyed before the step started');
    if (this.current) return errorOutcome('another step is still running in this sandbox');

    const argv = typeof step.run === 'string' ? ['/bin/sh', '-c', step.run] : step.run;
    let started: ReturnType<ContainerOps['exec']>;
    try {
      started = this.ops.exec(argv, step.env);
    } catch (e) {
      return errorOutcome(e instanceof Error ? e.message : String(e));
    }
    const supervised = supervise(started.child, step, { kill: () => this.kill(), spawnError: started.spawnError });
    this.current = supervised;
    let r;
    try {
      r = await supervised.done;
    } finally {
      this.current = undefined;
    }

    if (r.stopped === 'timeout' || r.stopped === 'cancelled') {
      this.broken = `the container was killed when an earlier step ${r.stopped === 'timeout' ? 'timed out' : 'was cancelled'}`;
    }
    if (r.stopped) return { exitCode: null, stopped: r.stopped, message: r.message };
    if (this.destroyed) return { exitCode: r.code, stopped: 'error', message: 'the sandbox was destroyed while the step ran' };
    // Any OOM kill inside the sandbox fails the step, even when its shell carried on: a
    // compiler killed halfway can leave output that looks complete.
    if ((this.oomFile !== null || r.code === 137) && await this.oomKilled()) {
      const limit = this.guards.memoryBytes ? ` of ${formatBytes(this.guards.memoryBytes)}` : '';
      return { exitCode: r.code, stopped: 'memory', message: `step ran out of memory: a process was killed for exceeding the memory limit${limit}` };
    }
    // Likewise a full workdir: whatever the step's exit code, what it wrote may be cut short.
    if (this.guards.disk && await diskFull(this.guards.disk.dir, r.code !== 0)) {
      return { exitCode: r.code, stopped: 'disk', message: `step ran out of disk space: the workdir is full at the disk limit of ${formatBytes(this.guards.disk.bytes)}` };
    }
    if (r.code === null || r.code === 125 || r.code === 255) {
      const state = await containerState(this.name);
      if (state !== 'running' && state !== 'paused') {
        this.broken = `the build container stopped (podman reports it ${state ?? 'gone'})`;
        return { exitCode: r.code, stopped: 'error', message: this.broken };
      }
    }
    return { exitCode: r.code, stopped: null, message: null };
  }

  /** Pauses every process in the container (cgroup freezer) and the step's timer. */
  freeze(): Promise<void> {
    return this.serial(async () => {
      if (this.gate.frozen || this.destroyed || this.broken) return;
      this.gate.set(true);
      this.current?.timer.pause();
      try {
        await this.ops.freeze();
      } catch (e) {
        this.gate.set(false);
        this.current?.timer.resume();
        throw e;
      }
    });
  }

  thaw(): Promise<void> {
    return this.serial(async () => {
      if (!this.gate.frozen) return;
      if (!this.destroyed && !this.broken) await this.ops.thaw();
      this.gate.set(false);
      this.current?.timer.resume();
    });
  }

  /** Removes the container; idempotent and safe to call concurrently. */
  /** The container's cgroup total, found from its init through `podman inspect` (worker/cpu-time.ts). */
  async cpuMs(): Promise<number | null> {
    if (this.destroyed) return null;
    const r = await podman(['inspect', '--format', '{{.State.Pid}}', this.name], { allowFailure: true, timeoutMs: 30_000 });
    return r.code === 0 ? cgroupCpuMs(Number(r.stdout.trim())) : null;
  }

  destroy(): Promise<void> {
    if (!this.destroying) {
      this.destroyed = true;
      this.gate.release();
      this.destroying = this.ops.remove().then(() => this.giveBack());
      // A failed removal may be retried by calling destroy() again.
      this.destroying.catch(() => { this.destroying = undefined; });
    }
    return this.destroying;
  }

  /** The workdir's files back to the worker's user (not following symlinks; chown clears setuid bits). */
  private async giveBack(): Promise<void> {
    const o = this.guards.ownerAfter;
    if (!o) return;
    await run('chown', ['-R', '-P', '-h', `${o.uid}:${o.gid}`, '--', o.dir], { timeout: 300_000 }).catch((e: { stderr?: string; message?: string }) => {
      throw new Error(`could not give the workdir ${o.dir} back to uid ${o.uid}: ${(e.stderr ?? e.message ?? '').trim()}`);
    });
  }

  /** Kills every process in the container (also when paused); the build cannot continue. */
  private async kill(): Promise<void> {
    this.broken ??= 'the build container was killed';
    await this.ops.kill();
  }

  private async oomKilled(): Promise<boolean> {
    const now = await readOomKills(this.oomFile);
    if (now !== null && this.oomKills !== null) {
      const grew = now > this.oomKills;
      this.oomKills = now;
      return grew;
    }
    const r = await podman(['inspect', '--format', '{{.State.OOMKilled}}', this.name], { allowFailure: true, timeoutMs: 30_000 });
    return r.stdout.trim() === 'true';
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.lock.then(f, f);
    this.lock = p.catch(() => {});
    return p;
  }
}

const run = promisify(execFile);

async function readOomKills(file: string | null): Promise<number | null> {
  if (!file) return null;
  const text = await readFile(file, 'utf8').catch(() => '');
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : null;
}
