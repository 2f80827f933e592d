import type { EnvironmentSpec, ExecutorKind, Limits } from '../../protocol/build-spec.js';

/**
 * Executors run a build's steps in an isolated place. They never see protocol messages: the
 * runner (worker/runner.ts) translates an assignment into calls on this interface.
 *
 * Lifecycle, in order:
 *   isAvailable()            once at start; decides which executors the worker offers
 *   cleanupStale()           once at start; removes what an earlier, crashed run left behind
 *   limitDisk(dir, bytes)    optional, per build, before the checkout: bounds the workdir
 *   prepare(environment)     per build; builds or reuses the environment (may take minutes)
 *   open(request)            per build; creates the sandbox (container, VM, process group)
 *   sandbox.run(step) ...    once per step, in order, never two at a time
 *   sandbox.freeze()/thaw()  any time while open; frozen time does not count toward timeouts
 *   sandbox.destroy()        always, also after failure or cancel; idempotent
 *   diskLimit.release()      after destroy(), once the runner has read the artifacts
 *   setWarm(allowed)         optional, any time: whether builds may run now (the governor, drain)
 *   close()                  optional, once when the worker stops
 *
 * The runner owns the workdir on the host; the executor mounts it (and nothing else of the
 * host) at `/work` and runs steps there.
 */
export interface Executor {
  readonly kind: ExecutorKind;
  /**
   * The build's steps run as this worker's user with nothing between (the host executor): an
   * empty build directory may then be kept for the next build instead of removed
   * (worker/build-dirs.ts). Unset for anything that isolates a build.
   */
  readonly keepsBuildDirs?: boolean;
  isAvailable(): Promise<Availability>;
  cleanupStale(): Promise<number>;
  prepare(environment: EnvironmentSpec, progress: (line: string) => void, options?: PrepareOptions): Promise<void>;
  open(request: SandboxRequest): Promise<Sandbox>;
  /**
   * Makes the empty directory `dir` hold at most `bytes` (its own filesystem), so a build
   * cannot fill the volunteer's disk. Null when this executor cannot enforce it here.
   */
  limitDisk?(dir: string, bytes: number): Promise<DiskLimit | null>;
  /**
   * [provenance] The id of the image the environment's steps ran in (podman's image id), after
   * prepare(); null when this executor has none to name. Only read by the runner, for the
   * attempt's signed statement.
   */
  environmentId?(environment: EnvironmentSpec): Promise<string | null>;
  /**
   * Optional: the agent says whether builds may run now (false while paused, in use, outside
   * the schedule, draining or stopping). An executor that keeps sandboxes ready ahead of
   * builds (the container executor's warm sandboxes) removes them all on false — resolving
   * once they are gone — and makes them again on true.
   */
  setWarm?(allowed: boolean): Promise<void>;
  /** Optional: removes whatever the executor keeps between builds (the worker is stopping). */
  close?(): Promise<void>;
}

/** Something the volunteer's freeze gate can stop and start: a sandbox, or a running setup line. */
export interface Freezable {
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /**
   * Optional: holds the sandbox to at most `cpus` cores (the cgroup's CPU quota) without
   * freezing it; null gives back the quota it was started with. Sandboxes without it are
   * frozen instead when the volunteer asks to "keep going gently".
   */
  limitCpu?(cpus: number | null): Promise<void>;
  /** Optional: CPU time the sandbox used so far, µs (its cgroup's counter), read as it is detached. */
  cpuUsageUsec?(): number | null;
}

/**
 * What prepare() runs code from the builder file under: `environment.setup` lines run in a
 * sandbox like a step's (user namespace, capabilities, these limits), frozen through `gate`.
 */
export interface PrepareOptions {
  /** The tighter of the builder's and the volunteer's limits (memory, pids, cpus; timeMs bounds each setup line). */
  limits?: Limits;
  /** The build's freeze gate: a running setup line is attached while it runs. */
  gate?: {
    attach(f: Freezable): Promise<void>;
    detach(f: Freezable): void;
    waitThawed(signal: AbortSignal): Promise<void>;
  };
  /** Aborting kills a running setup line. */
  signal?: AbortSignal;
}

export interface DiskLimit {
  readonly bytes: number;
  /** Unmounts and deletes what limitDisk made; the directory's contents are gone. Idempotent. */
  release(): Promise<void>;
}

export type Availability = { ok: true } | { ok: false; reason: string };

export interface SandboxRequest {
  /** Unique per build attempt, safe in container names: `[a-z0-9-]+`. */
  id: string;
  /** Host directory holding the checkout; mounted read-write at /work. */
  workdir: string;
  environment: EnvironmentSpec;
  /** Already the tighter of the builder's and the volunteer's limits. */
  limits: Limits;
  network: boolean;
  /**
   * Let steps write anywhere in the environment's root (a test-install stage installing
   * packages). Otherwise only /work and the temporary directories are writable, so that the
   * disk limit bounds everything a build writes.
   */
  writableRoot?: boolean;
  /**
   * The build's own directory, with `workdir` (the checkout) directly in it (runner: BUILD/src).
   * A container then mounts it at /build, the checkout at /build/SRC and also at /work, and
   * runs steps in /build/SRC: `..` is writable and is the build's own directory (inside its
   * disk limit, given back and removed with it), as dpkg-buildpackage, which writes its .deb
   * to the source tree's parent, expects. Artifact patterns may then name `../*.deb`.
   */
  buildDir?: string;
}

export interface StepRequest {
  /** A string runs under /bin/sh -c; a list is argv. */
  run: string | string[];
  env: Record<string, string>;
  /** Wall time for this step, not counting frozen time. */
  timeoutMs: number;
  /** Called with output as it arrives, in order. Returning a promise pauses reading until it settles (backpressure). */
  onOutput: (chunk: Buffer, stream: 'stdout' | 'stderr') => void | Promise<void>;
  /** Aborting kills the step's whole process tree; the outcome then says `cancelled`. */
  signal: AbortSignal;
}

export interface StepOutcome {
  exitCode: number | null;
  /** Set when the step did not simply exit: which limit it broke, or that it was cancelled. */
  stopped: null | 'timeout' | 'memory' | 'disk' | 'cancelled' | 'error';
  /** A sentence for the log when `stopped` is set or the sandbox failed. */
  message: string | null;
}

export interface Sandbox {
  run(step: StepRequest): Promise<StepOutcome>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** See Freezable.limitCpu. */
  limitCpu?(cpus: number | null): Promise<void>;
  destroy(): Promise<void>;
  /** CPU ms used in this sandbox so far (worker/cpu-time.ts), read before `destroy`; null when it cannot be known. */
  cpuMs?(): Promise<number | null>;
}
