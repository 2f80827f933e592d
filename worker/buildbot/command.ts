import { TextDecoder } from 'node:util';
import type { Freezer } from './freeze.js';
import type { Launcher } from './launch.js';
import { LineSplitter, UpdateBuffer, type UpdatePair } from './lines.js';
import type { PathPolicy } from './paths.js';

/**
 * The protocol side of one running command (buildbot_worker/base.py ProtocolCommandBase and
 * commands/base.py Command): log text becomes whole lines, updates are batched, `rc` goes
 * before `complete`, and nothing is sent after `complete`.
 */

export interface WorkerSettings {
  newlineRe: RegExp;
  maxLineLength: number;
  bufferSize: number;
  /** How long output may wait in the batch (the master's buffer_timeout caps it). */
  bufferDelayMs: number;
}

export interface CommandChannel {
  /** Sends a worker → master request and resolves with the master's result. */
  request(msg: Record<string, unknown>): Promise<unknown>;
  /** Null when the socket can take more, else a promise that resolves once it has drained. */
  drained(): Promise<void> | null;
  log(line: string): void;
}

const TEXT_KEYS = new Set(['stdout', 'stderr', 'header']);

export class CommandContext {
  /** False once interrupted or finished: status() is then ignored (Command.running). */
  running = true;
  interrupted = false;
  private completed = false;
  private readonly splitters = new Map<string, LineSplitter>();
  private readonly buffer: UpdateBuffer;
  private interruptHandler: ((why: string) => void) | undefined;
  private readonly decoders = new Map<string, TextDecoder>();

  constructor(
    readonly id: string,
    readonly builder: string | undefined,
    private readonly channel: CommandChannel,
    private readonly settings: WorkerSettings,
  ) {
    this.buffer = new UpdateBuffer((updates) => this.sendUpdates(updates), settings.bufferSize, settings.bufferDelayMs);
  }

  /** Sends updates unless the command has completed (protocol_command.send_update). */
  update(pairs: UpdatePair[]): void {
    if (this.completed) return;
    const now = Date.now() / 1000;
    for (const [key, value] of pairs) {
      if (TEXT_KEYS.has(key)) {
        const lines = this.splitter(key).append(String(value), now);
        if (lines) this.buffer.append(key, lines);
      } else if (key === 'log') {
        const [name, text] = value as [string, string];
        const lines = this.splitter(`log:${name}`).append(text, now);
        if (lines) this.buffer.append('log', [name, lines]);
      } else {
        this.buffer.append(key, value);
      }
    }
  }

  /** Sends updates while the command runs normally (Command.sendStatus). */
  status(pairs: UpdatePair[]): void {
    if (this.running) this.update(pairs);
  }

  /** Text of a stream decoded as UTF-8 across chunk boundaries (invalid bytes become U+FFFD). */
  decode(stream: string, chunk: Buffer): string {
    let d = this.decoders.get(stream);
    if (!d) { d = new TextDecoder('utf-8'); this.decoders.set(stream, d); }
    return d.decode(chunk, { stream: true });
  }

  /** What a stream's decoder still holds (an incomplete UTF-8 sequence becomes U+FFFD). */
  decodeEnd(stream: string): string {
    return this.decoders.get(stream)?.decode() ?? '';
  }

  /** Sends held-back partial lines (completed with "\n") and everything batched. */
  flushOutput(): void {
    const bare = (k: string): string => (k.startsWith('log:') ? k.slice(4) : k);
    for (const key of [...this.splitters.keys()].sort((a, b) => (bare(a) < bare(b) ? -1 : bare(a) > bare(b) ? 1 : 0))) {
      const lines = this.splitters.get(key)!.flush();
      if (!lines) continue;
      if (key.startsWith('log:')) this.buffer.append('log', [key.slice(4), lines]);
      else this.buffer.append(key, lines);
    }
    this.buffer.flush();
  }

  /** A transfer request tied to this command (update_upload_file_write, update_read_file, …). */
  call(op: string, extra: Record<string, unknown> = {}): Promise<unknown> {
    return this.channel.request({ op, command_id: this.id, ...extra });
  }

  /** Null when output may flow, else resolves once the connection to the master has drained. */
  drained(): Promise<void> | null {
    return this.channel.drained();
  }

  onInterrupt(handler: (why: string) => void): void {
    this.interruptHandler = handler;
  }

  /** interrupt_command: flush what we have, stop status updates, tell the command. */
  interrupt(why: string): void {
    if (this.completed) return;
    this.flushOutput();
    this.running = false;
    this.interrupted = true;
    this.interruptHandler?.(why);
  }

  /** Flushes, then sends `complete` with null (normal end) or the failure text. */
  async complete(failure: string | null): Promise<void> {
    if (this.completed) return;
    this.flushOutput();
    this.completed = true;
    this.running = false;
    await this.channel.request({ op: 'complete', command_id: this.id, args: failure }).catch((e: unknown) => {
      this.channel.log(`buildbot: completing command ${this.id} failed: ${e instanceof Error ? e.message : String(e)}`);
    });
  }

  /** The connection is gone: stop the command and send nothing more. */
  abandon(why: string): void {
    if (this.completed) return;
    this.completed = true;
    this.running = false;
    this.interrupted = true;
    this.buffer.discard();
    this.interruptHandler?.(why);
  }

  private splitter(key: string): LineSplitter {
    let s = this.splitters.get(key);
    if (!s) { s = new LineSplitter(this.settings.maxLineLength, this.settings.newlineRe); this.splitters.set(key, s); }
    return s;
  }

  private sendUpdates(updates: UpdatePair[]): void {
    this.channel.request({ op: 'update', command_id: this.id, args: updates }).catch((e: unknown) => {
      this.channel.log(`buildbot: update of command ${this.id} failed: ${e instanceof Error ? e.message : String(e)}`);
    });
  }
}

/** What commands may use of the worker. */
export interface CommandEnv {
  paths: PathPolicy;
  freezer: Freezer;
  /** Where a shell command with this workdir and command runs. */
  placeShell(workdir: string, command: string | string[]): Promise<ShellPlacement>;
  /**
   * Runs host-side work on `path` (a file command) while nothing of its builder's build can
   * run (the container frozen; container-launcher.ts quiesce). Host executor: runs it directly.
   */
  quiesce<T>(path: string, fn: () => Promise<T>): Promise<T>;
  /** The worker's own helper processes (rm, cp, chmod): always on the host. */
  utility: Launcher;
  log(line: string): void;
}

export interface ShellPlacement {
  launcher: Launcher;
  /** Host path → path inside the container, or null when it runs on the host. */
  containerPath: ((hostPath: string) => string) | null;
}

export type Args = Record<string, unknown>;

export interface CommandSpec {
  /** Arguments without which start_command is refused (as the stock worker's requiredArgs). */
  required: string[];
  /** Runs to the end; throwing completes the command with that failure text. */
  run(ctx: CommandContext, args: Args, env: CommandEnv): Promise<void>;
}

/** Reads one argument, naming the command and the argument when its type is wrong. */
export function arg<T extends 'string' | 'number' | 'boolean'>(args: Args, name: string, type: T, command: string):
  (T extends 'string' ? string : T extends 'number' ? number : boolean) | null {
  const v = args[name];
  if (v === undefined || v === null) return null;
  if (typeof v !== type) throw new Error(`${command}: args.${name} must be a ${type}, got ${JSON.stringify(v)}`);
  return v as never;
}

export function strings(args: Args, name: string, command: string): string[] {
  const v = args[name];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`${command}: args.${name} must be a list of paths`);
  return v as string[];
}
