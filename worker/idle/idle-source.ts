/**
 * Where the agent learns how long the desktop has been without input. One interface, several
 * sources: GNOME's Mutter IdleMonitor (D-Bus), the Wayland idle protocols through swayidle
 * (KDE, wlroots compositors), X11 (XScreenSaver idle time + XInput2 events), logind's IdleHint
 * over D-Bus, macOS HIDIdleTime, Windows GetLastInputInfo, the desktop app (Electron
 * powerMonitor, fed through the control API), `none`, and `unavailable`.
 */
export interface IdleReading {
  /** Milliseconds since the last keyboard or mouse input. Infinity when away (locked, suspended). */
  idleMs: number;
  locked: boolean;
  /** Set by sources that know (the desktop app); undefined otherwise. */
  onBattery?: boolean;
}

export interface IdleSource {
  readonly name: IdleSourceName;
  /** Why this source was chosen, for `crowdbake status`. */
  readonly why: string;
  read(): Promise<IdleReading>;
  /**
   * Calls back at once on input, where the source can tell (X11 via XInput2, Mutter's
   * user-active watch, the Wayland idle protocols' `resumed`). Sources that
   * cannot return false, and the agent polls `read()` instead.
   */
  onInput(callback: () => void): boolean;
  close(): void;
}

export type IdleSourceName = 'mutter' | 'wayland' | 'x11' | 'logind' | 'macos' | 'windows' | 'app' | 'none' | 'unavailable';

/**
 * A desktop session was found but no idle source works in it: the machine counts as always in
 * use, so builds wait rather than run under someone's hands. `why` says what to install.
 */
export class UnavailableIdleSource implements IdleSource {
  readonly name = 'unavailable' as const;
  constructor(readonly why: string) {}
  async read(): Promise<IdleReading> {
    return { idleMs: 0, locked: false };
  }
  onInput(): boolean {
    return false;
  }
  close(): void {}
}

/** No idle detection: the machine counts as always idle (headless servers, or nothing found). */
export class NoIdleSource implements IdleSource {
  readonly name = 'none' as const;
  constructor(readonly why: string) {}
  async read(): Promise<IdleReading> {
    return { idleMs: Infinity, locked: false };
  }
  onInput(): boolean {
    return false;
  }
  close(): void {}
}

/**
 * Fed from outside — the desktop app reports Electron's powerMonitor idle time, lock and
 * suspend events through the control API. Without a report for 2 minutes it counts as in
 * use (the app may have died; better not to build on a desk someone sits at).
 */
export class ReportedIdleSource implements IdleSource {
  readonly name = 'app' as const;
  readonly why = 'idle time reported by the desktop app (Electron powerMonitor)';
  private last: { at: number; reading: IdleReading } | null = null;
  private readonly listeners = new Set<() => void>();

  report(r: { idleMs: number; locked: boolean; suspended: boolean; onBattery?: boolean }): void {
    const away = r.locked || r.suspended;
    const reading: IdleReading = { idleMs: away ? Infinity : r.idleMs, locked: r.locked, ...(r.onBattery !== undefined ? { onBattery: r.onBattery } : {}) };
    const wasIdle = this.last?.reading.idleMs ?? 0;
    this.last = { at: Date.now(), reading };
    if (reading.idleMs < wasIdle) for (const l of this.listeners) l();
  }

  async read(): Promise<IdleReading> {
    if (!this.last || Date.now() - this.last.at > 120_000) return { idleMs: 0, locked: false };
    const { reading, at } = this.last;
    return { ...reading, idleMs: reading.idleMs + (Date.now() - at) };
  }

  onInput(callback: () => void): boolean {
    this.listeners.add(callback);
    return true;
  }

  close(): void {
    this.listeners.clear();
  }
}
