import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { EnvironmentSpec, Limits } from '../../protocol/build-spec.js';
import type { Executor } from '../executors/executor.js';
import type { FreezeGate } from '../freeze-gate.js';
import { CommandContext, type CommandEnv, type CommandSpec, type ShellPlacement, type WorkerSettings } from './command.js';
import { MasterError, MsgpackConnection, type Message } from './connection.js';
import { ContainerPool } from './container-launcher.js';
import { Freezer } from './freeze.js';
import { FS_COMMANDS } from './fs-commands.js';
import { HostGitLauncher, isHostGit } from './host-git.js';
import { HostLauncher } from './launch.js';
import { DEFAULT_NEWLINE_RE, pythonRegex } from './lines.js';
import { PathPolicy } from './paths.js';
import { shellCommand } from './shell-command.js';
import { TRANSFER_COMMANDS } from './transfer-commands.js';
import { workerInfo } from './worker-info.js';
import { compileForBuilds } from '../v8-tiers.js';

/**
 * A BuildBot worker speaking `msgpack_experimental_v7`, so a volunteer can serve a project's
 * existing BuildBot (≥ 3.7) master: `crowdbake worker --buildbot ws://HOST:PORT`. It dials the
 * master, answers its requests (print, keepalive, get_worker_info, set_worker_settings,
 * start_command, interrupt_command, shutdown) and reconnects with backoff when the connection
 * drops. See worker/buildbot/README.md for what runs where and how it differs from the stock
 * buildbot-worker.
 */

export const BUILDBOT_WORKER_VERSION = 'crowdbake-0.1.0';

export interface BuildbotWorkerOptions {
  /** ws://HOST:PORT of the master's msgpack_experimental_v7 port. */
  url: string;
  name: string;
  password: string;
  /** Builder directories live here (created if missing). */
  basedir: string;
  /** host: like the stock worker, on this computer. container: shell steps in a podman sandbox. */
  executor: 'host' | 'container';
  /** Container environment (default busybox). */
  environment?: EnvironmentSpec;
  /** With the container executor, `['git']` to run BuildBot's git commands on the host (host-git.ts; the default), `[]` to run them in the container. */
  hostCommands?: string[];
  /** Network inside the containers (default off, as for Crowdbake builders). */
  network?: boolean;
  /** CPU and memory limits of each container, read when it is opened (the volunteer may change them). */
  limits?: Limits | (() => Limits);
  /** A container unused this long is removed (default 10 min); the directory stays. */
  containerIdleMs?: number;
  /** Lets the agent freeze everything this worker runs. */
  freezeGate?: FreezeGate;
  /** Reported to the master: it then removes directories of builders it no longer has. */
  deleteLeftoverDirs?: boolean;
  /** For tests: the container executor to use. */
  containerExecutor?: Executor;
  backoff?: { initialMs: number; maxMs: number };
  log?: (line: string) => void;
}

/** The largest max_line_length / buffer_size a master may set (BuildBot's defaults: 4096 and 64 KiB). */
const MAX_LINE_LENGTH = 16 * 1024 * 1024;
const COMMANDS: Record<string, CommandSpec> = { shell: shellCommand, ...FS_COMMANDS, ...TRANSFER_COMMANDS };
export const COMMAND_NAMES = Object.keys(COMMANDS);

export class BuildbotWorker {
  /** Resolves when the worker stops: 'shutdown' (the master asked) or 'closed' (close()). */
  readonly done: Promise<'shutdown' | 'closed'>;
  private finish!: (why: 'shutdown' | 'closed') => void;
  private conn: MsgpackConnection | null = null;
  private stopped = false;
  private attempt = 0;
  private retry: { timer: NodeJS.Timeout; wake: () => void } | null = null;
  private readonly commands = new Map<string, CommandContext>();
  private readonly startedAt = new Map<string, string>();
  private readonly settings: WorkerSettings = { newlineRe: pythonRegex(DEFAULT_NEWLINE_RE), maxLineLength: 4096, bufferSize: 64 * 1024, bufferDelayMs: 50 };
  private readonly freezer = new Freezer();
  private readonly paths: PathPolicy;
  private readonly pool: ContainerPool | null;
  private readonly env: CommandEnv;
  private readonly log: (line: string) => void;
  readonly basedir: string;

  constructor(private readonly o: BuildbotWorkerOptions, executor: Executor | null) {
    this.basedir = resolve(o.basedir);
    this.log = o.log ?? ((l) => console.log(l));
    this.done = new Promise((ok) => { this.finish = ok; });
    const contained = o.executor === 'container';
    this.paths = new PathPolicy(this.basedir, contained);
    this.pool = contained && executor ? new ContainerPool({
      executor, environment: o.environment ?? { base: 'busybox', setup: [] }, network: o.network ?? false,
      limits: typeof o.limits === 'function' ? o.limits : () => (o.limits ?? {}) as Limits,
      idPrefix: `bb-${sanitize(o.name)}-${process.pid}`, idleMs: o.containerIdleMs ?? 600_000, freezer: this.freezer, log: this.log,
    }) : null;
    const host = new HostLauncher();
    const hostCommands = o.hostCommands ?? ['git'];
    this.env = {
      paths: this.paths,
      freezer: this.freezer,
      utility: contained ? new HostLauncher(() => ({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' })) : host,
      log: this.log,
      quiesce: async <T>(path: string, fn: () => Promise<T>): Promise<T> => {
        if (!this.pool) return fn();
        let builderDir: string | null;
        // Outside the basedir: nothing to hold; the command's own path check refuses it.
        try { builderDir = this.paths.builderDir(path); } catch { return fn(); }
        return builderDir === null ? fn() : this.pool.quiesce(builderDir, fn);
      },
      placeShell: async (workdir, command): Promise<ShellPlacement> => {
        if (!this.pool) return { launcher: host, containerPath: null };
        const builderDir = this.paths.builderDir(workdir);
        if (builderDir === null) throw new Error(`shell workdir ${workdir} is the basedir itself; the container executor runs commands in builder directories`);
        // Host git (argv[0] exactly "git"): host-git.ts says where it runs and why that is safe.
        if (isHostGit(command, hostCommands)) {
          const pool = this.pool;
          return { launcher: new HostGitLauncher(this.basedir, builderDir, this.paths, () => pool.hold(builderDir)), containerPath: null };
        }
        return { launcher: this.pool.launcher(builderDir), containerPath: (p) => ContainerPool.containerPath(builderDir, p) };
      },
    };
  }

  get connected(): boolean {
    return this.conn?.isOpen ?? false;
  }

  /** Frozen by the freeze gate (running commands stopped, new ones waiting). */
  get frozen(): boolean {
    return this.freezer.frozen;
  }

  /** The build commands running (or waiting for a thaw) now; attach-time commands are not listed. */
  running(): { id: string; builder: string; startedAt: string }[] {
    return [...this.commands.values()].filter((c) => c.builder !== undefined)
      .map((c) => ({ id: c.id, builder: c.builder!, startedAt: this.startedAt.get(c.id) ?? '' }));
  }

  /** Stops: kills running commands, closes the connection and removes the containers. */
  async close(): Promise<void> {
    await this.stop('closed');
  }

  start(): void {
    this.o.freezeGate?.attach(this.freezer).catch((e: unknown) => this.log(`buildbot: freezing failed: ${String(e)}`));
    void this.loop();
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let conn: MsgpackConnection;
      try {
        conn = await MsgpackConnection.open(this.o.url, this.o.name, this.o.password, (m) => this.handle(m), this.log);
      } catch (e) {
        this.log(`buildbot: ${e instanceof MasterError ? '' : 'connecting failed: '}${(e as Error).message}`);
        await this.backoff();
        continue;
      }
      if (this.stopped) { conn.close(); break; }
      this.conn = conn;
      this.attempt = 0;
      this.log(`buildbot: connected to ${this.o.url} as ${this.o.name}`);
      const why = await conn.closed;
      this.conn = null;
      this.dropCommands(`connection to the master lost (${why})`);
      if (this.stopped) break;
      this.log(`buildbot: ${why}; reconnecting`);
      await this.backoff();
    }
  }

  private async backoff(): Promise<void> {
    if (this.stopped) return;
    const { initialMs, maxMs } = this.o.backoff ?? { initialMs: 1000, maxMs: 60_000 };
    const ms = Math.min(maxMs, initialMs * 1.5 ** this.attempt++) * (0.5 + Math.random() / 2);
    await new Promise<void>((wake) => { this.retry = { timer: setTimeout(wake, ms), wake }; });
    this.retry = null;
  }

  private async handle(m: Message): Promise<unknown> {
    switch (m.op) {
      case 'print':
        if (!('message' in m)) throw new Error('message did not contain obligatory "message" key');
        this.log(`buildbot: message from master: ${String(m.message)}`);
        return null;
      case 'keepalive':
        return null;
      case 'get_worker_info':
        return workerInfo(this.basedir, this.o.executor === 'container', COMMAND_NAMES, BUILDBOT_WORKER_VERSION, this.o.deleteLeftoverDirs ?? false);
      case 'set_worker_settings':
        this.configure(m.args);
        return null;
      case 'start_command':
        return this.startCommand(m);
      case 'interrupt_command':
        if (!('command_id' in m) || !('why' in m)) throw new Error('message did not contain obligatory "command_id" key');
        this.commands.get(String(m.command_id))?.interrupt(String(m.why));
        return null;
      case 'shutdown':
        this.log('buildbot: the master asked this worker to shut down');
        setTimeout(() => { void this.stop('shutdown'); }, 200);
        return null;
      default:
        throw new Error(`Command ${String(m.op)} does not exist.`);
    }
  }

  private configure(args: unknown): void {
    const a = (args ?? {}) as Record<string, unknown>;
    for (const k of ['buffer_size', 'buffer_timeout', 'newline_re', 'max_line_length']) {
      if (!(k in a)) throw new Error('message did not contain obligatory settings for worker');
    }
    try {
      this.settings.newlineRe = pythonRegex(String(a.newline_re));
    } catch (e) {
      this.log(`buildbot: the master's newline_re ${String(a.newline_re)} does not translate (${(e as Error).message}); using the default`);
    }
    // Numbers from the master: integers only, and capped, so that no setting makes the worker
    // hold an unbounded line or batch of a build's output (the volunteer's memory).
    const int = (v: unknown, min: number): number | null => (typeof v === 'number' && Number.isInteger(v) && v >= min ? v : null);
    const lineLength = int(a.max_line_length, 2);
    if (lineLength !== null) this.settings.maxLineLength = Math.min(lineLength, MAX_LINE_LENGTH);
    else if (a.max_line_length !== undefined) this.log(`buildbot: the master's max_line_length ${String(a.max_line_length)} is not an integer >= 2; kept ${this.settings.maxLineLength}`);
    const bufferSize = int(a.buffer_size, 1);
    if (bufferSize !== null) this.settings.bufferSize = Math.min(bufferSize, MAX_LINE_LENGTH);
    else if (a.buffer_size !== undefined) this.log(`buildbot: the master's buffer_size ${String(a.buffer_size)} is not a positive integer; kept ${this.settings.bufferSize}`);
    if (typeof a.buffer_timeout === 'number' && a.buffer_timeout >= 0) this.settings.bufferDelayMs = Math.min(50, a.buffer_timeout * 1000);
  }

  private startCommand(m: Message): null {
    const conn = this.conn;
    if (!conn) throw new Error('not connected');
    compileForBuilds(); // the agent idled on the interpreter only (v8-tiers.ts)
    for (const k of ['command_id', 'command_name', 'args']) {
      if (!(k in m)) throw new Error(`message did not contain obligatory "${k}" key`);
    }
    const name = String(m.command_name);
    const spec = COMMANDS[name];
    if (!spec) throw new Error(`unrecognized WorkerCommand '${name}'`);
    const args = m.args as Record<string, unknown>;
    if (typeof args !== 'object' || args === null) throw new Error(`${name}: args must be a map`);
    const missing = spec.required.filter((a) => !(a in args));
    if (missing.length) throw new Error(`${name} is missing args: ${missing.join(', ')}`);
    const id = String(m.command_id);
    const ctx = new CommandContext(id, typeof m.builder_name === 'string' ? m.builder_name : undefined, {
      request: (msg) => conn.request(msg), drained: () => conn.drained(), log: this.log,
    }, { ...this.settings });
    this.commands.set(id, ctx);
    this.startedAt.set(id, new Date().toISOString());
    void this.execute(ctx, spec, args);
    return null;
  }

  private async execute(ctx: CommandContext, spec: CommandSpec, args: Record<string, unknown>): Promise<void> {
    let failure: string | null = null;
    // A build's command waits while frozen (the volunteer's computer is in use) before it does
    // anything; attach-time commands (no builder) are the master's bookkeeping and run at once.
    if (ctx.builder !== undefined && this.freezer.frozen) {
      ctx.update([['header', 'crowdbake: waiting, this volunteer\'s computer is in use (frozen)\n']]);
      await new Promise<void>((ok) => { ctx.onInterrupt(() => ok()); void this.freezer.waitThawed().then(ok); });
      if (!ctx.running) ctx.update([['header', 'command interrupted before it started\n'], ['rc', -1]]);
    }
    const started = Date.now();
    try {
      if (ctx.running) await spec.run(ctx, args, this.env);
    } catch (e) {
      failure = e instanceof Error ? e.message : String(e);
      this.log(`buildbot: command ${ctx.id} failed: ${failure}`);
    }
    ctx.status([['elapsed', (Date.now() - started) / 1000]]);
    if (this.commands.get(ctx.id) === ctx) { this.commands.delete(ctx.id); this.startedAt.delete(ctx.id); }
    await ctx.complete(failure);
  }

  /** The master will not hear from these commands again: stop them, send nothing. */
  private dropCommands(why: string): void {
    for (const ctx of this.commands.values()) {
      this.log(`buildbot: stopping command ${ctx.id}: ${why}`);
      ctx.abandon(why);
    }
    this.commands.clear();
    this.startedAt.clear();
  }

  private async stop(why: 'shutdown' | 'closed'): Promise<void> {
    if (this.stopped) return this.done.then(() => undefined);
    this.stopped = true;
    if (this.retry) { clearTimeout(this.retry.timer); this.retry.wake(); }
    this.o.freezeGate?.detach(this.freezer);
    await this.freezer.thaw();
    this.dropCommands('the worker is stopping');
    this.conn?.close();
    await this.pool?.closeAll();
    this.finish(why);
  }
}

/** Starts a BuildBot worker; with the container executor, checks podman first. */
export async function startBuildbotWorker(o: BuildbotWorkerOptions): Promise<BuildbotWorker> {
  await mkdir(resolve(o.basedir), { recursive: true });
  let executor: Executor | null = null;
  if (o.executor === 'container') {
    // Loaded only for this executor: the host executor does without podman's code. No user
    // namespace here: BuildBot's file commands (downloads, copies) write into the builder
    // directory from the host between shell commands, as the worker's user, and a mapped
    // container root could not read them.
    executor = o.containerExecutor ?? new (await import('../executors/container.js')).ContainerExecutor({ ownerId: `buildbot-${sanitize(o.name)}`, userNamespace: false });
    const available = await executor.isAvailable();
    if (!available.ok) throw new Error(`the container executor is not available here: ${available.reason}`);
    await executor.cleanupStale();
  }
  const w = new BuildbotWorker(o, executor);
  w.start();
  return w;
}

function sanitize(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'worker';
}
