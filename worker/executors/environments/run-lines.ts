import { spawn } from 'node:child_process';
import { StepTimer } from '../step-support.js';

/** Runs a command to completion, handing every line of its stdout and stderr to `onLine`. */

export interface RunLinesOptions {
  onLine: (line: string) => void;
  /** Kill the process (its whole group when `group`) and fail after this long. */
  timeoutMs: number;
  /** Start it in its own process group so a timeout kills what it started (debootstrap's dpkg). */
  group?: boolean;
  /** Called on timeout before the process is killed (e.g. `podman kill` the container). */
  onTimeout?: () => Promise<void>;
  /** Aborting stops it like a timeout does (onTimeout, then kill); the result says `cancelled`. */
  signal?: AbortSignal;
  /** Gets the time limit's timer, to pause it while the process is frozen (frozen time does not count). */
  onTimer?: (timer: { pause(): void; resume(): void }) => void;
  /** The working directory (default the worker's). */
  cwd?: string;
}

export interface RunLinesResult {
  code: number | null;
  timedOut: boolean;
  cancelled: boolean;
  /** The last lines of output, for error messages. */
  tail: string[];
}

const TAIL = 20;

export function runLines(cmd: string, args: readonly string[], options: RunLinesOptions): Promise<RunLinesResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: options.group === true, ...(options.cwd ? { cwd: options.cwd } : {}) });
    const tail: string[] = [];
    let timedOut = false;
    let cancelled = false;
    const line = (text: string): void => {
      if (!text.trim()) return;
      tail.push(text);
      if (tail.length > TAIL) tail.shift();
      options.onLine(text);
    };
    const splitter = (): ((chunk: Buffer) => void) & { flush: () => void } => {
      let partial = '';
      const feed = (chunk: Buffer): void => {
        const parts = (partial + chunk.toString('utf8')).split(/\r?\n|\r/);
        partial = parts.pop() ?? '';
        for (const p of parts) line(p);
      };
      return Object.assign(feed, { flush: () => { line(partial); partial = ''; } });
    };
    const out = splitter();
    const err = splitter();
    child.stdout.on('data', out);
    child.stderr.on('data', err);
    const kill = (): void => {
      try {
        if (options.group && child.pid) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch { /* already gone */ }
    };
    const stop = (): void => {
      void (options.onTimeout?.() ?? Promise.resolve()).catch(() => {}).finally(kill);
    };
    const timer = new StepTimer(options.timeoutMs, () => {
      timedOut = true;
      stop();
    });
    timer.resume();
    options.onTimer?.(timer);
    const onAbort = (): void => {
      if (timedOut || cancelled) return;
      cancelled = true;
      timer.stop();
      stop();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    const settle = (): void => {
      timer.stop();
      options.signal?.removeEventListener('abort', onAbort);
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      settle();
      reject(new Error(e.code === 'ENOENT' ? `${cmd} is not installed` : `${cmd} could not start: ${e.message}`));
    });
    child.on('close', (code) => {
      settle();
      out.flush();
      err.flush();
      resolve({ code, timedOut, cancelled, tail });
    });
  });
}
