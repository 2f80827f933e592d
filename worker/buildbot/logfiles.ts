import { constants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TextDecoder } from 'node:util';
import type { PathPolicy } from './paths.js';

/**
 * Follows one of a shell command's `logfiles` (runprocess.py LogFileWatcher): nothing is sent
 * until the file appears or changes after the command started; then its content (or, with
 * `follow`, only what was appended since the command started) goes to the master as that
 * log, polled every second and once more when the command ends.
 */

const POLL_MS = 1000;
const CHUNK = 64 * 1024;

type Stamp = { ctimeMs: number; mtimeMs: number; size: number } | null;

export class LogFileWatcher {
  private initial: Stamp = null;
  private file: FileHandle | null = null;
  private position = 0;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();
  private readonly decoder = new TextDecoder('utf-8');
  private failed = false;

  private constructor(
    readonly name: string,
    readonly path: string,
    private readonly follow: boolean,
    private readonly paths: PathPolicy,
    private readonly emit: (name: string, text: string) => void,
    private readonly warn: (line: string) => void,
  ) {}

  /** Records the file's state before the command starts. `spec` is a path or {filename, follow}. */
  static async create(name: string, spec: unknown, workdir: string, paths: PathPolicy,
    emit: (name: string, text: string) => void, warn: (line: string) => void): Promise<LogFileWatcher> {
    const options = typeof spec === 'object' && spec !== null ? spec as Record<string, unknown> : { filename: spec };
    if (typeof options.filename !== 'string') throw new Error(`logfiles.${name} must be a file name or {filename, follow}`);
    const w = new LogFileWatcher(name, join(workdir, options.filename), options.follow === true, paths, emit, warn);
    w.initial = await w.stamp();
    return w;
  }

  start(): void {
    void this.poll();
    this.timer = setInterval(() => { void this.poll(); }, POLL_MS);
  }

  /** Reads what is left, then stops. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.poll();
    const tail = this.decoder.decode();
    if (tail) this.emit(this.name, tail);
    await this.file?.close().catch(() => {});
    this.file = null;
  }

  private poll(): Promise<void> {
    this.polling = this.polling.then(() => this.read()).catch((e: unknown) => {
      if (!this.failed) this.warn(`buildbot: logfile ${this.name} (${this.path}): ${e instanceof Error ? e.message : String(e)}`);
      this.failed = true;
    });
    return this.polling;
  }

  private async read(): Promise<void> {
    if (this.failed) return;
    if (!this.file) {
      const now = await this.stamp();
      if (same(now, this.initial)) return;
      if (!now) { this.initial = null; return; }
      await this.paths.check(this.path, `logfile ${this.name}`);
      this.file = await open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
      // follow: only what was appended after the command started (the stock worker skips
      // everything up to the size it first saw changed, losing the first lines appended).
      this.position = this.follow && this.initial && now.size >= this.initial.size ? this.initial.size : 0;
    }
    const buf = Buffer.alloc(CHUNK);
    for (;;) {
      const { bytesRead } = await this.file.read(buf, 0, CHUNK, this.position);
      if (bytesRead === 0) return;
      this.position += bytesRead;
      const text = this.decoder.decode(buf.subarray(0, bytesRead), { stream: true });
      if (text) this.emit(this.name, text);
    }
  }

  private async stamp(): Promise<Stamp> {
    const s = await stat(this.path).catch(() => null);
    return s ? { ctimeMs: s.ctimeMs, mtimeMs: s.mtimeMs, size: s.size } : null;
  }
}

function same(a: Stamp, b: Stamp): boolean {
  if (a === null || b === null) return a === b;
  return a.ctimeMs === b.ctimeMs && a.mtimeMs === b.mtimeMs && a.size === b.size;
}
