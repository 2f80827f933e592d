import { mkdir } from 'node:fs/promises';
import { relative, resolve, sep } from 'node:path';
import type { EnvironmentSpec, Limits } from '../../protocol/build-spec.js';
import type { Executor, Sandbox, StepOutcome } from '../executors/executor.js';
import type { Freezer } from './freeze.js';
import type { ExitStatus, Launched, Launcher, LaunchSpec } from './launch.js';

/**
 * Shell commands in the volunteer's sandbox: one container per builder directory
 * (basedir/<builddir>, mounted at /work), opened at its first command and kept for the next
 * ones — a build's steps share it, as BuildBot steps share the directory — then closed after
 * `idleMs` without commands. Killing a command (interrupt, timeout) kills its container; the
 * next command gets a fresh one on the same directory.
 *
 * Paths: the master names host paths (basedir/<builddir>/build); the workdir, $PWD and every
 * argument or env value holding the builder directory are rewritten to /work/… inside.
 */

const FALLBACK_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' };
/** Our own timers handle timeout/maxTime; the sandbox's wall-time limit is only a backstop. */
const NO_LIMIT_MS = 2 ** 31 - 1;
const MOUNT = '/work';

export interface ContainerPoolOptions {
  executor: Executor;
  environment: EnvironmentSpec;
  network: boolean;
  /** Read when a container is opened. */
  limits: () => Limits;
  /** Sandbox ids start with this ([a-z0-9-]). */
  idPrefix: string;
  idleMs: number;
  freezer: Freezer;
  log: (line: string) => void;
}

interface Entry {
  opening: Promise<{ sandbox: Sandbox; env: Record<string, string> }>;
  sandbox?: Sandbox;
  broken: boolean;
  busy: Promise<unknown>;
  idle?: NodeJS.Timeout;
  unfreeze?: () => void;
  /** Host-side operations holding this container frozen (quiesce), and whether the volunteer's Freezer froze it. */
  held: number;
  volunteerFrozen: boolean;
}

export class ContainerPool {
  private readonly entries = new Map<string, Entry>();
  /** Per builder directory: the end of the last host-side hold (holds run one at a time). */
  private readonly holds = new Map<string, Promise<void>>();
  private seq = 0;

  constructor(private readonly o: ContainerPoolOptions) {}

  /** Host path under `builderDir` → the same path inside its container. */
  static containerPath(builderDir: string, hostPath: string): string {
    const rel = relative(builderDir, resolve(hostPath));
    return rel === '' ? MOUNT : `${MOUNT}/${rel.split(sep).join('/')}`;
  }

  launcher(builderDir: string): Launcher {
    return {
      baseEnv: async () => ({ ...(await this.entry(builderDir).opening).env }),
      launch: (spec) => this.launch(builderDir, spec),
    };
  }

  /**
   * Runs `fn` — host-side work on `builderDir` (file commands, host git) — while no process of
   * the build can run: the builder's container, if there is one, is frozen (cgroup freezer /
   * podman pause) for the whole of `fn`, and commands launched meanwhile wait. A container that
   * cannot be frozen is removed instead. So a process the build left running cannot swap a
   * path (a symlink for a directory) between the worker's check of that path and its use.
   * Holds on one builder directory run one after the other.
   */
  async quiesce<T>(builderDir: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.hold(builderDir);
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  /** Takes the hold of quiesce(); resolves with its release once the container is frozen (or gone). */
  async hold(builderDir: string): Promise<() => Promise<void>> {
    const previous = this.holds.get(builderDir) ?? Promise.resolve();
    let done!: () => void;
    const mine = previous.then(() => new Promise<void>((ok) => { done = ok; }));
    this.holds.set(builderDir, mine);
    await previous;
    const finish = (): void => {
      done();
      if (this.holds.get(builderDir) === mine) this.holds.delete(builderDir);
    };
    const e = this.entries.get(builderDir);
    const sandbox = e ? (await e.opening.catch(() => null))?.sandbox : undefined;
    if (!e || !sandbox) return async () => finish();
    e.held++;
    try {
      await sandbox.freeze();
    } catch (err) {
      // Not frozen: remove it, so nothing of the build runs; if even that fails, refuse the work.
      e.held--;
      e.broken = true;
      try {
        if (this.entries.get(builderDir) === e) this.entries.delete(builderDir);
        e.unfreeze?.();
        await sandbox.destroy();
      } catch (destroyError) {
        finish();
        throw new Error(`the container of ${builderDir} could neither be frozen (${String(err)}) nor removed (${String(destroyError)}); host-side work on it refused`);
      }
      return async () => finish();
    }
    return async () => {
      e.held--;
      try {
        if (e.held === 0 && !e.volunteerFrozen && !e.broken) await sandbox.thaw();
      } finally {
        finish();
      }
    };
  }

  async closeAll(): Promise<void> {
    const all = [...this.entries.keys()];
    await Promise.all(all.map((dir) => this.close(dir)));
  }

  private entry(builderDir: string): Entry {
    const existing = this.entries.get(builderDir);
    if (existing && !existing.broken) {
      clearTimeout(existing.idle);
      return existing;
    }
    if (existing) void this.close(builderDir);
    const id = `${this.o.idPrefix}-${++this.seq}`;
    const e: Entry = { broken: false, busy: Promise.resolve(), opening: Promise.resolve(null as never), held: 0, volunteerFrozen: false };
    e.opening = (async () => {
      await mkdir(builderDir, { recursive: true });
      // Setup lines run in the step sandbox (setup-layer.ts) under the builder's limits, frozen with the builder.
      let unfreezeSetup: (() => void) | undefined;
      await this.o.executor.prepare(this.o.environment, (line) => this.o.log(`buildbot: environment: ${line}`), {
        limits: this.o.limits(),
        gate: {
          attach: async (f) => { unfreezeSetup = this.o.freezer.add(f); },
          detach: () => unfreezeSetup?.(),
          waitThawed: () => this.o.freezer.waitThawed(),
        },
      });
      const sandbox = await this.o.executor.open({ id, workdir: builderDir, environment: this.o.environment, limits: this.o.limits(), network: this.o.network });
      e.sandbox = sandbox;
      // The volunteer's thaw leaves it frozen while a host-side hold needs it so.
      e.unfreeze = this.o.freezer.add({
        freeze: async () => { e.volunteerFrozen = true; await sandbox.freeze(); },
        thaw: async () => { e.volunteerFrozen = false; if (e.held === 0) await sandbox.thaw(); },
      });
      return { sandbox, env: await captureEnv(sandbox) };
    })();
    e.opening.catch(() => { if (this.entries.get(builderDir) === e) this.entries.delete(builderDir); });
    this.entries.set(builderDir, e);
    return e;
  }

  private async close(builderDir: string): Promise<void> {
    const e = this.entries.get(builderDir);
    if (!e) return;
    this.entries.delete(builderDir);
    clearTimeout(e.idle);
    e.unfreeze?.();
    const sandbox = e.sandbox ?? (await e.opening.catch(() => null))?.sandbox;
    await sandbox?.destroy().catch((err: unknown) => this.o.log(`buildbot: removing the container of ${builderDir} failed: ${String(err)}`));
  }

  private async launch(builderDir: string, spec: LaunchSpec): Promise<Launched> {
    // Host-side work on this directory holds the container frozen: start after it.
    for (let h = this.holds.get(builderDir); h; h = this.holds.get(builderDir)) await h;
    const e = this.entry(builderDir);
    const { sandbox } = await e.opening;
    const inside = (s: string): string => rewrite(s, builderDir);
    const env = Object.fromEntries(Object.entries(spec.env).map(([k, v]) => [k, inside(v)]));
    const stdin = spec.stdin ? ['CROWDBAKE_STDIN=' + spec.stdin.toString()] : [];
    const script = stdin.length
      ? 'cd "$1" || exit 1; shift; printf %s "$CROWDBAKE_STDIN" | { unset CROWDBAKE_STDIN; exec "$@"; }'
      : 'cd "$1" || exit 1; shift; exec "$@"';
    const run = ['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...stdin,
      '/bin/sh', '-c', script, 'sh', ContainerPool.containerPath(builderDir, spec.cwd), ...spec.argv.map(inside)];
    const abort = new AbortController();
    let running = true;
    const previous = e.busy;
    const exited = (async (): Promise<ExitStatus> => {
      await previous.catch(() => {});
      const outcome = await sandbox.run({ run, env: {}, timeoutMs: NO_LIMIT_MS, signal: abort.signal, onOutput: spec.onOutput });
      return this.outcome(builderDir, e, outcome, spec);
    })().finally(() => {
      running = false;
      if (this.entries.get(builderDir) === e && !e.broken) {
        e.idle = setTimeout(() => { void this.close(builderDir); }, this.o.idleMs);
        e.idle.unref();
      }
    });
    e.busy = exited;
    return {
      kill: () => { abort.abort(); return true; },
      alive: () => running,
      exited,
      // The container itself is registered with the Freezer: freezing it stops this command.
      freeze: async () => {},
      thaw: async () => {},
    };
  }

  private async outcome(builderDir: string, e: Entry, r: StepOutcome, spec: LaunchSpec): Promise<ExitStatus> {
    if (r.stopped === null) return { code: r.exitCode, signal: null };
    // Killed (by us, or by the memory limit) or the container broke: it cannot be reused.
    e.broken = true;
    void this.close(builderDir);
    if (r.stopped === 'cancelled' || r.stopped === 'timeout') return { code: null, signal: 9 };
    if (r.message) await spec.onOutput(Buffer.from(`${r.message}\n`), 'stderr');
    return r.stopped === 'memory' ? { code: null, signal: 9 } : { code: r.exitCode ?? -1, signal: null };
  }
}

/** Replaces the builder directory (a host path) with /work in a string. */
function rewrite(s: string, builderDir: string): string {
  if (!s.includes(builderDir)) return s;
  return s.split(builderDir).reduce((acc, part, i) => {
    if (i === 0) return part;
    const ok = part === '' || part.startsWith('/');
    return acc + (ok ? MOUNT : builderDir) + part;
  });
}

/** The environment a command inherits in this container (the image's, as podman exec sets it). */
async function captureEnv(sandbox: Sandbox): Promise<Record<string, string>> {
  let out = '';
  const r = await sandbox.run({
    run: ['cat', '/proc/self/environ'], env: {}, timeoutMs: 60_000, signal: new AbortController().signal,
    onOutput: (chunk, stream) => { if (stream === 'stdout') out += chunk.toString(); },
  });
  if (r.exitCode !== 0 || r.stopped) return { ...FALLBACK_ENV };
  const env: Record<string, string> = {};
  for (const pair of out.split('\0')) {
    const i = pair.indexOf('=');
    if (i > 0) env[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return env;
}
