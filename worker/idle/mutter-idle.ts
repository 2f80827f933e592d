import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import type { IdleReading, IdleSource } from './idle-source.js';

/**
 * GNOME (Mutter): `org.gnome.Mutter.IdleMonitor` on the session bus, object
 * `/org/gnome/Mutter/IdleMonitor/Core` — `GetIdletime` for the idle time, and a user-active
 * watch (`AddUserActiveWatch`, then the `WatchFired` signal) for the moment input arrives.
 *
 * Mutter ties every watch to the D-Bus connection that added it (the watch is dropped when that
 * caller leaves the bus, and `WatchFired` is sent to that caller only), so a `gdbus call` per
 * request cannot hold one. The kept client is GLib's own GDBus, driven by a small Python helper
 * (python3-gi, the same GLib as gdbus) that holds one connection and speaks lines on a pipe:
 *   → "get"            ← "idletime MS"
 *   ← "ready MS"       (once connected; or "error TEXT" and exit)
 *   ← "active"         (a user-active watch fired: input; the watch is re-armed at once)
 *   ← "inhibited 0|1"  (answer to "get", before "idletime": gnome-session's idle inhibitor)
 * Idle inhibition: Mutter's idle time ignores inhibitors; gnome-session keeps them
 * (`org.gnome.SessionManager.IsInhibited(8)`), so where gnome-session runs an idle inhibitor
 * (a video, a presentation) counts as in use — seen at the next read, within a second.
 * Runs as the volunteer, on their own session bus; it sends nothing that came from a master.
 */
const HELPER = String.raw`
import sys
from gi.repository import Gio, GLib
NAME = 'org.gnome.Mutter.IdleMonitor'
PATH = '/org/gnome/Mutter/IdleMonitor/Core'
IFACE = 'org.gnome.Mutter.IdleMonitor'
def out(s):
    sys.stdout.write(s + '\n'); sys.stdout.flush()
try:
    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    def call(method, args, rtype, name=NAME, path=PATH, iface=IFACE):
        return bus.call_sync(name, path, iface, method, args, GLib.VariantType(rtype), Gio.DBusCallFlags.NO_AUTO_START, 2000, None).unpack()
    active = [None]
    def arm():
        active[0] = call('AddUserActiveWatch', None, '(u)')[0]
    def fired(conn, sender, path, iface, signal, params, data):
        if params.unpack()[0] == active[0]:
            out('active')
            try: arm()
            except Exception as e: out('error ' + str(e)); loop.quit()
    bus.signal_subscribe(None, IFACE, 'WatchFired', PATH, None, Gio.DBusSignalFlags.NONE, fired, None)
    arm()
    first = call('GetIdletime', None, '(t)')[0]
except Exception as e:
    out('error ' + str(e).splitlines()[0]); sys.exit(1)
def inhibited():
    try:
        return call('IsInhibited', GLib.Variant('(u)', (8,)), '(b)', 'org.gnome.SessionManager', '/org/gnome/SessionManager', 'org.gnome.SessionManager')[0]
    except Exception:
        return False
def on_stdin(ch, cond):
    line = ch.readline()
    if not line:
        loop.quit(); return False
    if line.strip() == 'get':
        try:
            out('inhibited ' + ('1' if inhibited() else '0'))
            out('idletime %d' % call('GetIdletime', None, '(t)')[0])
        except Exception as e:
            out('error ' + str(e).splitlines()[0])
    return True
loop = GLib.MainLoop()
GLib.io_add_watch(GLib.IOChannel.unix_new(0), GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP, on_stdin)
out('ready %d' % first)
loop.run()
`;

export class MutterIdleSource implements IdleSource {
  readonly name = 'mutter' as const;
  private readonly listeners = new Set<() => void>();
  private waiting: { ok: (r: IdleReading) => void; fail: (e: Error) => void; inhibited: boolean }[] = [];
  private dead: string | null = null;

  private constructor(private readonly child: ChildProcess, lines: Interface, readonly why: string) {
    lines.on('line', (l) => this.line(l));
    child.on('exit', (code, signal) => {
      this.dead = `the Mutter idle helper exited (${signal ?? code})`;
      for (const w of this.waiting.splice(0)) w.fail(new Error(this.dead));
    });
  }

  /** Connects to Mutter on the session bus; fails with the reason if it cannot work. */
  static async start(env: NodeJS.ProcessEnv, why: string): Promise<{ ok: true; source: MutterIdleSource } | { ok: false; reason: string }> {
    if (!env.DBUS_SESSION_BUS_ADDRESS && !env.XDG_RUNTIME_DIR) return { ok: false, reason: 'no session bus (neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set)' };
    let child: ChildProcess;
    try {
      // The system's python3, where python3-gi lives (a python3 first on PATH may be a virtualenv without it).
      child = spawn(existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', ['-c', HELPER], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => { if (stderr.length < 4000) stderr += b.toString(); });
    const lines = createInterface({ input: child.stdout! });
    const first = await new Promise<string>((ok) => {
      const t = setTimeout(() => ok('error no answer within 5 s'), 5000);
      const done = (s: string) => { clearTimeout(t); ok(s); };
      lines.once('line', done);
      child.once('error', (e: NodeJS.ErrnoException) => done(`error ${e.code === 'ENOENT' ? 'python3 is not installed' : e.message}`));
      child.once('exit', () => setTimeout(() => done(`error ${/No module named 'gi'/.test(stderr) ? 'python3-gi is not installed (apt-get install python3-gi)' : stderr.trim().split('\n').pop() ?? 'the helper exited'}`), 50));
    });
    if (!first.startsWith('ready ')) {
      child.kill();
      const msg = first.replace(/^error /, '');
      const reason = /ServiceUnknown|NameHasNoOwner|was not provided/.test(msg) ? `no ${'org.gnome.Mutter.IdleMonitor'} on the session bus (not a GNOME/Mutter session): ${msg}` : msg;
      return { ok: false, reason: `Mutter: ${reason}` };
    }
    child.stdin!.on('error', () => undefined); // a dead helper is reported by 'exit'
    return { ok: true, source: new MutterIdleSource(child, lines, why) };
  }

  private line(l: string): void {
    if (l === 'active') {
      for (const cb of this.listeners) cb();
      return;
    }
    const w = this.waiting[0];
    if (!w) return;
    if (l.startsWith('inhibited ')) w.inhibited = l === 'inhibited 1';
    else if (l.startsWith('idletime ')) {
      this.waiting.shift();
      const ms = Number(l.slice(9));
      if (!Number.isFinite(ms)) w.fail(new Error(`Mutter: unexpected answer "${l}"`));
      else w.ok({ idleMs: w.inhibited ? 0 : ms, locked: false });
    } else if (l.startsWith('error ')) {
      this.waiting.shift();
      w.fail(new Error(`Mutter: ${l.slice(6)}`));
    }
  }

  read(): Promise<IdleReading> {
    if (this.dead) return Promise.reject(new Error(this.dead));
    return new Promise((ok, fail) => {
      const w = { ok, fail, inhibited: false };
      // A helper that stops answering counts as in use (the governor treats a failed read so).
      const t = setTimeout(() => { this.waiting = this.waiting.filter((x) => x !== w); fail(new Error('Mutter: no answer within 3 s')); }, 3000);
      w.ok = (r) => { clearTimeout(t); ok(r); };
      w.fail = (e) => { clearTimeout(t); fail(e); };
      this.waiting.push(w);
      this.child.stdin!.write('get\n');
    });
  }

  onInput(callback: () => void): boolean {
    this.listeners.add(callback);
    return true;
  }

  close(): void {
    this.listeners.clear();
    this.child.stdin!.end();
    this.child.kill();
  }
}
