import { execFile } from 'node:child_process';
import type { IdleReading, IdleSource } from './idle-source.js';

/**
 * systemd-logind's session properties over D-Bus (`IdleHint`, `IdleSinceHint`, `LockedHint`),
 * read with gdbus. Works on Wayland desktops whose compositor sets the idle hint (GNOME, KDE).
 * Coarse: there is no input event, so the agent polls.
 */
export class LogindIdleSource implements IdleSource {
  readonly name = 'logind' as const;

  constructor(private readonly session: string, readonly why: string) {}

  static async probe(session: string): Promise<{ ok: true } | { ok: false; reason: string }> {
    try {
      await readSession(session);
      return { ok: true };
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
  }

  async read(): Promise<IdleReading> {
    const s = await readSession(this.session);
    if (s.locked) return { idleMs: Infinity, locked: true };
    if (!s.idle) return { idleMs: 0, locked: false };
    const sinceMs = s.idleSinceUsec / 1000;
    return { idleMs: sinceMs > 0 ? Math.max(0, Date.now() - sinceMs) : Infinity, locked: false };
  }

  onInput(): boolean {
    return false;
  }

  close(): void {}
}

/** The object path of a session: `auto` (the caller's own), or a session id. */
function sessionPath(session: string): string {
  if (session === 'auto') return '/org/freedesktop/login1/session/auto';
  // D-Bus object path escaping as systemd does it: every byte not [A-Za-z0-9] becomes _XX.
  return `/org/freedesktop/login1/session/${session.replace(/[^A-Za-z0-9]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}`;
}

async function readSession(session: string): Promise<{ idle: boolean; idleSinceUsec: number; locked: boolean }> {
  const get = (prop: string) => gdbusGet(sessionPath(session), prop);
  const [idle, since, locked] = await Promise.all([get('IdleHint'), get('IdleSinceHint'), get('LockedHint')]);
  return { idle: idle === 'true', idleSinceUsec: Number(since) || 0, locked: locked === 'true' };
}

function gdbusGet(path: string, prop: string): Promise<string> {
  return new Promise((ok, fail) => {
    execFile('gdbus', ['call', '--system', '--dest', 'org.freedesktop.login1', '--object-path', path,
      '--method', 'org.freedesktop.DBus.Properties.Get', 'org.freedesktop.login1.Session', prop],
    { timeout: 2000 }, (err, stdout) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        fail(new Error(code === 'ENOENT' ? 'gdbus is not installed (apt-get install libglib2.0-bin)' : `logind: ${err.message.split('\n')[1]?.trim() || err.message.trim()}`));
        return;
      }
      // Output looks like "(<true>,)" or "(<uint64 1732530000000000>,)".
      const m = /\(<(?:uint64 )?([^>]+)>,\)/.exec(stdout.trim());
      if (!m) fail(new Error(`logind: unexpected answer for ${prop}: ${stdout.trim()}`));
      else ok(m[1]!);
    });
  });
}
