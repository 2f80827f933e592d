import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import type { IdleReading, IdleSource } from './idle-source.js';

/** swayidle's granularity is whole seconds: idle is reported once input has stopped for this long. */
const TIMEOUT_S = 1;
/** How long a freshly started swayidle must stay up for the compositor to count as supported. */
const PROBE_MS = 300;

/**
 * The Wayland idle protocols — `ext-idle-notify-v1` (sway ≥ 1.8, KWin ≥ 5.27, Hyprland, river,
 * labwc, niri, …) and the older `org_kde_kwin_idle` (KWin, wlroots ≤ 0.16) — through Debian's
 * `swayidle`, a kept client that speaks both, rather than a hand-written Wayland client.
 *
 * swayidle runs `timeout 1 'echo idle' resume 'echo active'`: "idle" once input has stopped for
 * a second, "active" the moment input arrives after that (the compositor sends `resumed` on the
 * input event itself, so input is noticed at once). Idle inhibitors count as in use: swayidle
 * asks with `get_idle_notification`, which honours inhibitors (a video or presentation holding
 * the screensaver), and with `org_kde_kwin_idle` the compositor disables the timer while inhibited,
 * so "idle" never comes (and "active" is sent if it was idle) — builds are held.
 *
 * What it knows: idle for N ms when idle (N = time since the "idle" line + 1 s); otherwise "in
 * use" (0). Idle time before the agent started is not known: it counts from the agent's start.
 * Runs as the volunteer (the agent's own user); the commands are fixed strings of ours.
 */
export class WaylandIdleSource implements IdleSource {
  readonly name = 'wayland' as const;
  private idleSince: number | null = null;
  private dead: string | null = null;
  private readonly listeners = new Set<() => void>();

  private constructor(private readonly child: ChildProcess, readonly why: string, firstLines: string[]) {
    for (const l of firstLines) this.line(l);
    createInterface({ input: child.stdout! }).on('line', (l) => this.line(l));
    child.on('exit', (code, signal) => { this.dead = `swayidle exited (${signal ?? code})`; });
  }

  /** Starts swayidle on the session's Wayland display; fails with the reason if it cannot work. */
  static async start(env: NodeJS.ProcessEnv, why: string): Promise<{ ok: true; source: WaylandIdleSource } | { ok: false; reason: string }> {
    const display = env.WAYLAND_DISPLAY;
    if (!display) return { ok: false, reason: 'no WAYLAND_DISPLAY' };
    const socket = isAbsolute(display) ? display : join(env.XDG_RUNTIME_DIR ?? '', display);
    if (!isAbsolute(display) && !env.XDG_RUNTIME_DIR) return { ok: false, reason: 'WAYLAND_DISPLAY is set but XDG_RUNTIME_DIR is not' };
    if (!existsSync(socket)) return { ok: false, reason: `no Wayland socket at ${socket}` };
    let child: ChildProcess;
    try {
      child = spawn('swayidle', ['-w', 'timeout', String(TIMEOUT_S), 'echo idle', 'resume', 'echo active'], {
        env: { ...env, WAYLAND_DISPLAY: display }, stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      return { ok: false, reason: `swayidle: ${(e as Error).message}` };
    }
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => { if (stderr.length < 4000) stderr += b.toString(); });
    const lines: string[] = [];
    const early = createInterface({ input: child.stdout! });
    early.on('line', (l) => lines.push(l));
    const outcome = await new Promise<'up' | { code: number | null; error?: string }>((ok) => {
      const t = setTimeout(() => ok('up'), PROBE_MS);
      child.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(t); ok({ code: null, error: e.code === 'ENOENT' ? 'swayidle is not installed (apt-get install swayidle)' : e.message }); });
      child.once('exit', (code) => { clearTimeout(t); ok({ code }); });
    });
    early.close();
    if (outcome !== 'up') {
      child.kill();
      const said = stderr.split('\n').map((l) => l.replace(/^.*\[Line \d+\]\s*/, '').trim())
        .filter((l) => l && !/D-Bus|BlockInhibited/.test(l)).pop();
      return { ok: false, reason: outcome.error ?? `swayidle exited (${outcome.code}): ${said ?? 'no message'} — the compositor offers neither ext-idle-notify-v1 nor org_kde_kwin_idle` };
    }
    child.stderr!.resume();
    return { ok: true, source: new WaylandIdleSource(child, why, lines) };
  }

  private line(l: string): void {
    if (l === 'idle') this.idleSince = Date.now() - TIMEOUT_S * 1000;
    else if (l === 'active') {
      this.idleSince = null;
      for (const cb of this.listeners) cb();
    }
  }

  async read(): Promise<IdleReading> {
    // A dead watcher cannot see input: count as in use (the governor never builds on a desk by mistake).
    if (this.dead) throw new Error(this.dead);
    return { idleMs: this.idleSince === null ? 0 : Date.now() - this.idleSince, locked: false };
  }

  onInput(callback: () => void): boolean {
    this.listeners.add(callback);
    return true;
  }

  close(): void {
    this.listeners.clear();
    this.child.kill();
  }
}
