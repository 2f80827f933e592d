import { closeSync, constants, fstatSync, readSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TextDecoder } from 'node:util';
import type { PathPolicy } from './paths.js';
import { openBeneath } from './safe-fs.js';

/**
 * Follows one of a shell command's `logfiles` (runprocess.py LogFileWatcher): nothing is sent
 * until the file appears or changes after the command started; then its content (or, with
 * `follow`, only what was appended since the command started) goes to the master as that
 * log, polled every second and once more when the command ends.
 *
 * WHERE: on the host, while the build runs in its container and can change the directory at
 * any moment. Why that is safe (container executor): the file is opened through descriptors,
 * one component at a time, following no symlink (safe-fs.ts), and must be a regular file; a
 * symlink anywhere on its path (swapped in at any time) fails the open, so nothing outside the
 * basedir is read. Its size and times are taken from the opened descriptor too.
 */

interface Reader { read(buf: Buffer, position: number): Promise<number>; close(): Promise<void> }

const POLL_MS = 1000;
const CHUNK = 64 * 1024;

type Stamp = { ctimeMs: number; mtimeMs: number; size: number } | null;

export class LogFileWatcher {
  private initial: Stamp = null;
  private file: Reader | null = null;
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
      this.file = await this.open();
      // follow: only what was appended after the command started (the stock worker skips
      // everything up to the size it first saw changed, losing the first lines appended).
      this.position = this.follow && this.initial && now.size >= this.initial.size ? this.initial.size : 0;
    }
    const buf = Buffer.alloc(CHUNK);
    for (;;) {
      const bytesRead = await this.file.read(buf, this.position);
      if (bytesRead === 0) return;
      this.position += bytesRead;
      const text = this.decoder.decode(buf.subarray(0, bytesRead), { stream: true });
      if (text) this.emit(this.name, text);
    }
  }

  private async open(): Promise<Reader> {
    if (this.paths.confined) {
      const fd = openBeneath(this.paths.basedir, this.path, constants.O_RDONLY | constants.O_NONBLOCK);
      if (!fstatSync(fd).isFile()) { closeSync(fd); throw new Error('not a regular file'); }
      return { read: async (buf, position) => readSync(fd, buf, 0, buf.length, position), close: async () => closeSync(fd) };
    }
    const h = await open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
    return { read: async (buf, position) => (await h.read(buf, 0, buf.length, position)).bytesRead, close: () => h.close() };
  }

  private async stamp(): Promise<Stamp> {
    let s: { ctimeMs: number; mtimeMs: number; size: number } | null;
    if (this.paths.confined) {
      // Through a descriptor, following nothing (a symlink or a missing part: no file).
      try {
        const fd = openBeneath(this.paths.basedir, this.path, constants.O_RDONLY | constants.O_NONBLOCK);
        try { s = fstatSync(fd); } finally { closeSync(fd); }
      } catch { s = null; }
    } else {
      s = await stat(this.path).catch(() => null);
    }
    return s ? { ctimeMs: s.ctimeMs, mtimeMs: s.mtimeMs, size: s.size } : null;
  }
}

function same(a: Stamp, b: Stamp): boolean {
  if (a === null || b === null) return a === b;
  return a.ctimeMs === b.ctimeMs && a.mtimeMs === b.mtimeMs && a.size === b.size;
}
