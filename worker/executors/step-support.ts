import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { StepOutcome, StepRequest } from './executor.js';

/** Pieces shared by the executors: a pausable step timer and the child-process supervisor. */

/** A one-shot timer that can be paused (frozen time does not count). */
export class StepTimer {
  private remaining: number;
  private startedAt: number | null = null;
  private handle: NodeJS.Timeout | undefined;
  private done = false;

  constructor(ms: number, private readonly onExpire: () => void) {
    this.remaining = ms;
  }

  get running(): boolean {
    return this.startedAt !== null;
  }

  resume(): void {
    if (this.done || this.startedAt !== null) return;
    this.startedAt = performance.now();
    this.handle = setTimeout(() => {
      this.done = true;
      this.startedAt = null;
      this.onExpire();
    }, Math.max(0, this.remaining));
  }

  pause(): void {
    if (this.startedAt === null) return;
    clearTimeout(this.handle);
    this.remaining -= performance.now() - this.startedAt;
    this.startedAt = null;
  }

  stop(): void {
    this.pause();
    this.done = true;
  }
}

/** "5s", "2m", "1h", "1500ms": limits are usually round, so print them as written. */
export function formatLimit(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${Math.round(ms)}ms`;
}

/** "64 MiB", "2 GiB", or bytes when not a round number. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${bytes} bytes`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Returns an error sentence for the first invalid environment variable name, else null. */
export function invalidEnv(env: Record<string, string>): string | null {
  for (const key of Object.keys(env)) {
    if (!ENV_NAME.test(key)) return `"${key}" is not a valid environment variable name`;
  }
  return null;
}

export function errorOutcome(message: string): StepOutcome {
  return { exitCode: null, stopped: 'error', message };
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stopped: 'timeout' | 'cancelled' | 'error' | null;
  message: string | null;
}

/**
 * What supervise() needs of a step's process: a ChildProcess, or a stand-in with the same
 * streams and events ('close' only after both streams have ended).
 */
export interface StepChild {
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal?: NodeJS.Signals): boolean;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): this;
  on(event: 'exit' | 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

export interface SupervisorOptions {
  /** Kills the step's whole process tree; called once, on timeout, cancel or output failure. */
  kill: () => Promise<void> | void;
  /** Called when the main process has exited (e.g. to kill what it left behind). */
  onExit?: () => void;
  /** Sentence for a child that could not be started. */
  spawnError: (err: NodeJS.ErrnoException) => string;
}

export interface Supervised {
  timer: StepTimer;
  done: Promise<ChildResult>;
}

/** How long after exit/kill we wait for the pipes to close before giving up on them. */
const GRACE_MS = 5000;

/**
 * Watches a step's child process: streams its output to `onOutput` with backpressure, runs the
 * pausable timer, reacts to the abort signal, and resolves once the child is gone and every
 * output chunk has been handed over.
 */
export function supervise(child: StepChild, step: StepRequest, options: SupervisorOptions): Supervised {
  let stopped: ChildResult['stopped'] = null;
  let message: string | null = null;
  let killTimer: NodeJS.Timeout | undefined;
  let graceTimer: NodeJS.Timeout | undefined;

  const stop = (reason: 'timeout' | 'cancelled' | 'error', why: string): void => {
    if (stopped) return;
    stopped = reason;
    message = why;
    timer.stop();
    Promise.resolve().then(options.kill).catch((e: unknown) => {
      message = `${why}; stopping it failed: ${e instanceof Error ? e.message : String(e)}`;
    });
    // Last resort if the tree does not die: drop our own child.
    killTimer = setTimeout(() => child.kill('SIGKILL'), GRACE_MS * 2);
  };

  const timer = new StepTimer(step.timeoutMs, () =>
    stop('timeout', `step exceeded its time limit of ${formatLimit(step.timeoutMs)}`));
  const onAbort = (): void => stop('cancelled', 'step was cancelled');
  const streams = [child.stdout, child.stderr].filter((s): s is Readable => s !== null);
  const pump = pumpOutput(child, step.onOutput, (e) => stop('error', `handling the step's output failed: ${e.message}`));

  const done = new Promise<ChildResult>((resolve) => {
    let settled = false;
    const finish = (r: ChildResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      clearTimeout(graceTimer);
      timer.stop();
      step.signal.removeEventListener('abort', onAbort);
      void pump.drained().then(() => resolve(r));
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      finish({ code: null, signal: null, stopped: 'error', message: options.spawnError(e) });
    });
    child.on('exit', () => {
      options.onExit?.();
      // Something that escaped may still hold our pipes open; do not wait for it forever.
      graceTimer = setTimeout(() => { for (const s of streams) s.destroy(); }, GRACE_MS);
    });
    child.on('close', (code, signal) => finish({ code, signal, stopped, message }));
  });

  if (step.signal.aborted) onAbort();
  else step.signal.addEventListener('abort', onAbort, { once: true });
  if (!stopped) timer.resume();
  return { timer, done };
}

/**
 * Forwards stdout/stderr chunks in arrival order, one `onOutput` call at a time. While a
 * promise returned by `onOutput` is pending both streams are paused, so a slow consumer slows
 * the step down instead of buffering without bound. (Node resumes a child's streams itself
 * when the child exits, so chunks that still arrive are queued rather than delivered early.)
 */
function pumpOutput(child: StepChild, onOutput: StepRequest['onOutput'], onError: (e: Error) => void): { drained(): Promise<void> } {
  const queue: [Buffer, 'stdout' | 'stderr'][] = [];
  let busy = false;
  let failed = false;
  let waiters: (() => void)[] = [];
  const streams: [Readable | null, 'stdout' | 'stderr'][] = [[child.stdout, 'stdout'], [child.stderr, 'stderr']];
  const fail = (e: unknown): void => {
    if (failed) return;
    failed = true;
    queue.length = 0;
    onError(e instanceof Error ? e : new Error(String(e)));
  };
  const next = (): void => {
    while (!busy && queue.length > 0 && !failed) {
      const [chunk, name] = queue.shift()!;
      let r: void | Promise<void>;
      try {
        r = onOutput(chunk, name);
      } catch (e) {
        fail(e);
        break;
      }
      if (r && typeof (r as Promise<void>).then === 'function') {
        busy = true;
        for (const [s] of streams) s?.pause();
        (r as Promise<void>).then(() => undefined, fail).finally(() => {
          busy = false;
          next();
        });
      }
    }
    if (busy) return;
    for (const [s] of streams) s?.resume();
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  for (const [stream, name] of streams) {
    stream?.on('data', (chunk: Buffer) => {
      if (failed) return;
      queue.push([chunk, name]);
      next();
    });
  }
  return {
    drained: () => (!busy && queue.length === 0 ? Promise.resolve() : new Promise<void>((res) => waiters.push(res))),
  };
}

/** Lets a step that is about to start wait while the sandbox is frozen. */
export class FreezeGate {
  frozen = false;
  private readonly waiters = new Set<() => void>();

  set(frozen: boolean): void {
    this.frozen = frozen;
    if (!frozen) this.release();
  }

  /** Wakes every waiter (thaw, destroy). */
  release(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves once thawed, released or aborted; returns at once when not frozen. */
  async wait(signal: AbortSignal): Promise<void> {
    if (!this.frozen || signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
