import { spawn } from 'node:child_process';
import { killTree } from '../executors/host.js';
import { osError, reprStr, signalNumber } from './pyfmt.js';

/**
 * Where a BuildBot command's process runs. The shell command (run-process.ts) builds the
 * environment and the log headers, then asks a Launcher to start the process: on the host
 * (this file) or in the builder directory's container (container-launcher.ts).
 */

export interface LaunchSpec {
  argv: string[];
  /** The directory as the master named it (a host path under the worker's basedir). */
  cwd: string;
  /** The complete environment of the process (nothing is inherited on top of it). */
  env: Record<string, string>;
  stdin: Buffer | null;
  /** Output in arrival order; a returned promise pauses reading until it settles. */
  onOutput: (chunk: Buffer, stream: 'stdout' | 'stderr') => void | Promise<void>;
}

export interface ExitStatus {
  code: number | null;
  /** Signal number that ended it (as Python's status.signal), else null. */
  signal: number | null;
}

export interface Launched {
  /** Sends a signal ("TERM", "KILL", "INT", …) to the whole process group; false if it could not. */
  kill(signal: string): boolean;
  /** The main process has not exited yet. */
  alive(): boolean;
  /** Resolves when the process has exited and its output pipes are closed. */
  exited: Promise<ExitStatus>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
}

export interface Launcher {
  /** What "the worker's environment" is for this launcher: the base for env overrides and ${VAR}. */
  baseEnv(): Promise<Record<string, string>>;
  /** The environment the process really gets from the one asked for (shown in the log header); default: as asked. */
  effectiveEnv?(env: Record<string, string>): Record<string, string>;
  /** Starts the process; rejects with a sentence when it cannot be started at all. */
  launch(spec: LaunchSpec): Promise<Launched>;
}

/** Runs processes on this computer, each in its own process group (as the stock worker does). */
export class HostLauncher implements Launcher {
  constructor(private readonly env: () => Record<string, string> = hostEnv) {}

  async baseEnv(): Promise<Record<string, string>> {
    return this.env();
  }

  launch(spec: LaunchSpec): Promise<Launched> {
    return Promise.resolve(spawnInGroup(spec));
  }
}

export function hostEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) out[k] = v;
  return out;
}

function spawnInGroup(spec: LaunchSpec): Launched {
  const [cmd, ...args] = spec.argv;
  const child = spawn(cmd ?? '', args, {
    cwd: spec.cwd, env: spec.env, detached: true, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let running = true;
  let killed = false;
  let failed = false;
  const pid = child.pid;
  child.stdin?.on('error', () => { /* the process may not read its stdin */ });
  child.stdin?.end(spec.stdin ?? undefined);
  pump(child.stdout!, child.stderr!, spec.onOutput);
  const exited = new Promise<ExitStatus>((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      running = false;
      failed = true;
      // Like a failed exec in the stock worker's child: the reason on stderr, exit code 1.
      const { errno, strerror } = osError(e);
      if (e.syscall?.startsWith('spawn') && errno !== 1) {
        void Promise.resolve(spec.onOutput(Buffer.from(`[Errno ${errno}] ${strerror}: ${reprStr(cmd ?? '')}\n`), 'stderr'))
          .then(() => resolve({ code: 1, signal: null }), reject);
      } else {
        reject(e);
      }
    });
    child.once('exit', () => {
      running = false;
      // Like the stock worker (loseConnection), a killed command does not wait for pipes
      // that something it left behind still holds open.
      if (killed) setTimeout(() => { child.stdout?.destroy(); child.stderr?.destroy(); }, 200).unref();
    });
    child.once('close', (code, signal) => {
      running = false;
      if (failed) return;
      resolve({ code, signal: signal ? signalNumber(signal) ?? 9 : null });
    });
  });
  return {
    kill: (signal) => {
      if (!pid) return false;
      const n = signalNumber(signal);
      if (n === undefined) return false;
      killed = true;
      try { process.kill(-pid, n); return true; } catch { /* group gone: try the process */ }
      try { process.kill(pid, n); return true; } catch { return false; }
    },
    alive: () => running,
    exited,
    freeze: async () => { if (pid && running) killTree(pid, 'SIGSTOP'); },
    thaw: async () => { if (pid && running) killTree(pid, 'SIGCONT'); },
  };
}

/** Hands stdout/stderr chunks over in order; pauses both streams while a returned promise is pending. */
export function pump(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream, onOutput: LaunchSpec['onOutput']): void {
  let busy = 0;
  const handle = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    const r = onOutput(chunk, stream);
    if (r && typeof r.then === 'function') {
      if (busy++ === 0) { stdout.pause(); stderr.pause(); }
      void r.finally(() => { if (--busy === 0) { stdout.resume(); stderr.resume(); } });
    }
  };
  stdout.on('data', handle('stdout'));
  stderr.on('data', handle('stderr'));
}
