import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { IdleReading, IdleSource } from './idle-source.js';

/**
 * X11: `xprintidle` reads the XScreenSaver idle counter (≈5 ms); `xinput test-xi2 --root`
 * streams raw input events, so input is noticed within milliseconds instead of at the next poll.
 */
export class X11IdleSource implements IdleSource {
  readonly name = 'x11' as const;
  private watcher: ChildProcess | null = null;
  private closed = false;

  constructor(private readonly display: string, readonly why: string) {}

  static async probe(display: string | undefined): Promise<{ ok: true } | { ok: false; reason: string }> {
    if (!display) return { ok: false, reason: 'no DISPLAY' };
    try {
      await xprintidle(display);
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
  }

  async read(): Promise<IdleReading> {
    return { idleMs: await xprintidle(this.display), locked: false };
  }

  onInput(callback: () => void): boolean {
    if (this.closed) return false;
    let child: ChildProcess;
    try {
      child = spawn('xinput', ['test-xi2', '--root'], { env: { ...process.env, DISPLAY: this.display }, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return false;
    }
    this.watcher = child;
    let ok = true;
    child.on('error', () => { ok = false; });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('EVENT type')) callback();
    });
    child.on('exit', () => {
      if (this.watcher === child) this.watcher = null;
      // The X server went away or xinput died: fall back to polling (the caller still polls).
    });
    return ok;
  }

  close(): void {
    this.closed = true;
    this.watcher?.kill();
    this.watcher = null;
  }
}

function xprintidle(display: string): Promise<number> {
  return new Promise((ok, fail) => {
    execFile('xprintidle', [], { env: { ...process.env, DISPLAY: display }, timeout: 2000 }, (err, stdout) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        fail(new Error(code === 'ENOENT' ? 'xprintidle is not installed (apt-get install xprintidle)' : `xprintidle on ${display}: ${err.message.trim()}`));
        return;
      }
      const ms = Number(stdout.trim());
      if (!Number.isFinite(ms)) fail(new Error(`xprintidle printed "${stdout.trim()}"`));
      else ok(ms);
    });
  });
}
