import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { CommandContext } from './command.js';
import { PausableTimer, type Freezer } from './freeze.js';
import type { Launched, Launcher } from './launch.js';
import { LogFileWatcher } from './logfiles.js';
import type { PathPolicy } from './paths.js';
import { fixed6, pyStr, repr, reprCommandBytes, shellQuote } from './pyfmt.js';
import { mkdirBeneath } from './safe-fs.js';

/**
 * Runs one process for a command, as buildbot_worker/runprocess.py RunProcess does: the same
 * log headers, environment rules (list values joined with ":", null unsets, ${VAR} expanded
 * from the worker's environment, PYTHONPATH extended), obfuscated arguments (the real value
 * runs, the fake one is shown), the no-output `timeout` and the `maxTime`, SIGTERM then
 * `interruptSignal` after `sigtermTime`, initial stdin, logfiles, and `rc` -1 when killed.
 */

export interface RunProcessOptions {
  command: unknown;
  workdir: string;
  env?: unknown;
  sendStdout?: boolean;
  sendStderr?: boolean;
  sendRC?: boolean;
  timeout?: number | null;
  maxTime?: number | null;
  sigtermTime?: number | null;
  initialStdin?: string | null;
  logEnviron?: boolean;
  logfiles?: Record<string, unknown>;
  usePTY?: boolean;
  interruptSignal?: string;
  launcher: Launcher;
  paths: PathPolicy;
  freezer: Freezer;
  /** Container path of a host path, for $PWD (null: run on the host). */
  containerPath?: ((hostPath: string) => string) | null;
}

/** After killing, how long to wait for the process to go before reporting a fake rc. */
const BACKUP_TIMEOUT_MS = 5000;

/** Splits the master's command into what runs and what is shown. */
export function resolveCommand(command: unknown): { real: string | string[]; fake: string | string[] } {
  if (typeof command === 'string') return { real: command, fake: command };
  if (!Array.isArray(command)) throw new Error(`shell: args.command must be a string or a list, got ${repr(command)}`);
  const real: string[] = [];
  const fake: string[] = [];
  for (const w of command) {
    if (Array.isArray(w) && w.length === 3 && w[0] === 'obfuscated') {
      real.push(pyStr(w[1]));
      fake.push(pyStr(w[2]));
    } else {
      real.push(pyStr(w));
      fake.push(pyStr(w));
    }
  }
  return { real, fake };
}

/** The process environment from the master's `env` over the worker's base environment. */
export function buildEnv(env: unknown, base: Record<string, string>): Record<string, string> {
  if (env === null || env === undefined || typeof env !== 'object' || Object.keys(env).length === 0) return { ...base };
  const given: Record<string, unknown> = { ...(env as Record<string, unknown>) };
  for (const [k, v] of Object.entries(given)) if (Array.isArray(v)) given[k] = v.map(pyStr).join(':');
  if (typeof given.PYTHONPATH === 'string') given.PYTHONPATH += ':${PYTHONPATH}';
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (!(k in given) || given[k] !== null) out[k] = v;
  for (const [k, v] of Object.entries(given)) {
    if (v === null) continue;
    if (typeof v !== 'string') throw new Error(`'env' values must be strings or lists; key '${k}' is incorrect`);
    out[k] = v.replace(/\$\{([0-9a-zA-Z_]*)\}/g, (_, name: string) => base[name] ?? '');
  }
  return out;
}

function secs(n: number): string {
  return `${n} ${n === 1 ? 'sec' : 'secs'}`;
}

/** Runs the process; resolves with its rc. Rejects when it could not start (the command then fails). */
export async function runProcess(ctx: CommandContext, o: RunProcessOptions): Promise<number> {
  const { real, fake } = resolveCommand(o.command);
  const sendRC = o.sendRC ?? true;
  const interruptSignal = o.interruptSignal ?? 'KILL';
  const workdir = await o.paths.check(o.workdir, 'workdir');
  // Confined: created through descriptors, following no symlink a running build may swap in.
  if (o.paths.confined) mkdirBeneath(o.paths.basedir, workdir);
  else await mkdir(workdir, { recursive: true });
  const asked = buildEnv(o.env, await o.launcher.baseEnv());
  const env = o.launcher.effectiveEnv ? o.launcher.effectiveEnv(asked) : asked;
  env.PWD = o.containerPath ? o.containerPath(resolve(workdir)) : resolve(workdir);
  const stdin = o.initialStdin ? Buffer.from(o.initialStdin) : null;
  const update = ctx.update.bind(ctx);
  const watchers: LogFileWatcher[] = [];
  for (const [name, spec] of Object.entries(o.logfiles ?? {})) {
    watchers.push(await LogFileWatcher.create(name, spec, workdir, o.paths,
      (n, text) => { update([['log', [n, text]]]); ioTimer?.reset(); }, (l) => update([['header', `${l}\n`]])));
  }

  update([['header', `${typeof fake === 'string' ? fake : shellQuote(fake)}\n`]]);
  let dirLine = ` in dir ${o.workdir}`;
  if (o.timeout) dirLine += ` (timeout ${secs(o.timeout)})`;
  if (o.maxTime) dirLine += ` (maxTime ${secs(o.maxTime)})`;
  update([['header', `${dirLine}\n`]]);
  update([['header', ` watching logfiles ${repr(o.logfiles ?? {})}\n`]]);
  update([['header', ` argv: ${reprCommandBytes(fake)}\n`]]);
  if (o.logEnviron ?? true) {
    update([['header', ` environment:\n${Object.keys(env).sort().map((k) => `  ${k}=${env[k]}\n`).join('')}`]]);
  }
  if (stdin) update([['header', ` writing ${stdin.length} bytes to stdin\n`]]);
  update([['header', ' using PTY: False\n']]);

  let ioTimer: PausableTimer | undefined;
  let maxTimer: PausableTimer | undefined;
  let sigtermTimer: NodeJS.Timeout | undefined;
  let backupTimer: NodeJS.Timeout | undefined;
  let killed = false;
  let proc: Launched | undefined;
  let settle: ((rc: number | Error) => void) | undefined;
  const ended = new Promise<number | Error>((ok) => { settle = ok; });
  const cancelTimers = (): void => {
    ioTimer?.cancel(); maxTimer?.cancel(); clearTimeout(sigtermTimer); clearTimeout(backupTimer);
  };

  const signalProcess = (p: Launched): void => {
    const cleanUp = (): void => {
      backupTimer = setTimeout(() => {
        update([['header', `SIG${interruptSignal} failed to kill process\n`]]);
        if (sendRC) update([['header', 'using fake rc=-1\n'], ['rc', -1]]);
        settle?.(new Error(`SIG${interruptSignal} failed to kill process`));
      }, BACKUP_TIMEOUT_MS);
    };
    if (o.sigtermTime !== null && o.sigtermTime !== undefined) {
      p.kill('TERM');
      sigtermTimer = setTimeout(() => { if (p.alive()) p.kill(interruptSignal); cleanUp(); }, o.sigtermTime * 1000);
    } else {
      p.kill(interruptSignal);
      cleanUp();
    }
  };
  const kill = (msg: string): void => {
    if (killed) return;
    cancelTimers();
    update([['header', `\n${msg}, attempting to kill\n`]]);
    killed = true;
    if (proc) signalProcess(proc);
  };
  ctx.onInterrupt(() => kill('command interrupted'));

  await o.freezer.waitThawed();
  const started = Date.now();
  const onOutput = (chunk: Buffer, stream: 'stdout' | 'stderr'): void | Promise<void> => {
    if (stream === 'stdout' ? o.sendStdout ?? true : o.sendStderr ?? true) update([[stream, ctx.decode(stream, chunk)]]);
    ioTimer?.reset();
    return ctx.drained() ?? undefined;
  };
  try {
    proc = await o.launcher.launch({ argv: typeof real === 'string' ? ['/bin/sh', '-c', real] : real, cwd: workdir, env, stdin, onOutput });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    update([['stderr', `error in RunProcess._startCommand (${why})\n`]]);
    throw new Error(`Got exception (${why})`);
  }
  const p = proc;
  // The timers exist before the freezer knows the process, so a freeze from now on stops them too.
  const fakeRepr = reprCommandBytes(fake);
  if (o.timeout) ioTimer = new PausableTimer(o.timeout * 1000, () => kill(`command timed out: ${o.timeout} seconds without output running ${fakeRepr}`));
  if (o.maxTime) maxTimer = new PausableTimer(o.maxTime * 1000, () => kill(`command timed out: ${o.maxTime} seconds elapsed running ${fakeRepr}`));
  // Frozen (the volunteer's computer is in use): the process stops, and so do its timeout and
  // maxTime, which count only the time it may run. The log says so, as the master cannot show it.
  let frozenAt: number | null = null;
  const unfreeze = o.freezer.add({
    freeze: async () => {
      if (frozenAt === null) {
        frozenAt = Date.now();
        update([['header', 'crowdbake: frozen, this volunteer\'s computer is in use (timeouts stopped)\n']]);
      }
      await ioTimer?.freeze(); await maxTimer?.freeze(); await p.freeze();
    },
    thaw: async () => {
      await p.thaw(); await ioTimer?.thaw(); await maxTimer?.thaw();
      if (frozenAt !== null) update([['header', `crowdbake: thawed after ${((Date.now() - frozenAt) / 1000).toFixed(1)} s\n`]]);
      frozenAt = null;
    },
  });
  for (const w of watchers) w.start();
  if (killed) signalProcess(p);

  p.exited.then(async (status) => {
    for (const w of watchers) await w.stop();
    for (const s of ['stdout', 'stderr'] as const) {
      const tail = ctx.decodeEnd(s);
      if (tail && (s === 'stdout' ? o.sendStdout ?? true : o.sendStderr ?? true)) update([[s, tail]]);
    }
    let rc = status.code ?? -1;
    if (killed && rc === 0) rc = -1;
    if (status.signal !== null) rc = -1;
    if (sendRC) {
      if (status.signal !== null) update([['header', `process killed by signal ${status.signal}\n`]]);
      update([['rc', rc]]);
    }
    update([['header', `elapsedTime=${fixed6((Date.now() - started) / 1000)}\n`]]);
    settle?.(rc);
  }, (e: unknown) => settle?.(e instanceof Error ? e : new Error(String(e))));

  const result = await ended;
  cancelTimers();
  unfreeze();
  if (result instanceof Error) throw result;
  return result;
}
