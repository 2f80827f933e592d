import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The unprivileged user sway runs as when the tests run as root (sway refuses to run as root). */
const SWAY_USER = 'crowdbake-wl';

export interface Compositor {
  /** WAYLAND_DISPLAY, XDG_RUNTIME_DIR (and for Mutter DBUS_SESSION_BUS_ADDRESS) of the session. */
  env: Record<string, string>;
  /** One key press and release, as a person at the desk makes it. */
  input(): Promise<void>;
  close(): void;
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function uidOf(user: string): { uid: number; gid: number } {
  try {
    execFileSync('id', ['-u', user], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  }
  return { uid: Number(execFileSync('id', ['-u', user]).toString()), gid: Number(execFileSync('id', ['-g', user]).toString()) };
}

function killGroup(child: ChildProcess): void {
  try { process.kill(-child.pid!, 'SIGTERM'); } catch { /* gone */ }
}

/**
 * A real sway (wlroots) with its headless backend, Xwayland off, no input devices; input made
 * with `wtype` (virtual-keyboard protocol). As root it runs as an unprivileged user, its
 * XDG_RUNTIME_DIR owned by that user; clients running as root can still connect.
 */
export async function startSway(): Promise<Compositor & { swaymsg(...args: string[]): string }> {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-sway-'));
  writeFileSync(join(dir, 'config'), 'output HEADLESS-1 resolution 640x480\nxwayland disable\n');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', XDG_RUNTIME_DIR: dir, HOME: dir, WLR_BACKENDS: 'headless', WLR_LIBINPUT_NO_DEVICES: '1', WLR_RENDERER: 'pixman' };
  let child: ChildProcess;
  if (process.getuid?.() === 0) {
    const { uid, gid } = uidOf(SWAY_USER);
    chownSync(dir, uid, gid);
    chownSync(join(dir, 'config'), uid, gid);
    child = spawn('runuser', ['-u', SWAY_USER, '--', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'sway', '-c', join(dir, 'config')], { stdio: 'ignore', detached: true });
  } else {
    child = spawn('sway', ['-c', join(dir, 'config')], { env, stdio: 'ignore', detached: true });
  }
  const sockets = () => readdirSync(dir);
  const display = await waitFor('sway\'s Wayland socket', () => sockets().find((n) => /^wayland-\d+$/.test(n)));
  const ipc = await waitFor('sway\'s IPC socket', () => sockets().find((n) => /^sway-ipc\..*\.sock$/.test(n)));
  const clientEnv = { XDG_RUNTIME_DIR: dir, WAYLAND_DISPLAY: display };
  const swaymsg = (...args: string[]) => execFileSync('swaymsg', ['-s', join(dir, ipc), ...args], { encoding: 'utf8' });
  await waitFor('sway to answer', () => { try { swaymsg('-t', 'get_version'); return true; } catch { return undefined; } });
  return {
    env: clientEnv,
    swaymsg,
    input: async () => { execFileSync('wtype', ['k'], { env: { ...process.env, ...clientEnv } }); },
    close: () => { killGroup(child); setTimeout(() => rmSync(dir, { recursive: true, force: true }), 500).unref(); },
  };
}

/** Keeps one RemoteDesktop session (sessions belong to the D-Bus connection that made them). */
const REMOTE_DESKTOP = String.raw`
import sys, dbus
bus = dbus.SessionBus()
rd = dbus.Interface(bus.get_object('org.gnome.Mutter.RemoteDesktop', '/org/gnome/Mutter/RemoteDesktop'), 'org.gnome.Mutter.RemoteDesktop')
s = dbus.Interface(bus.get_object('org.gnome.Mutter.RemoteDesktop', rd.CreateSession()), 'org.gnome.Mutter.RemoteDesktop.Session')
s.Start()
print('ready', flush=True)
for line in sys.stdin:
    s.NotifyKeyboardKeycode(dbus.UInt32(42), True)
    s.NotifyKeyboardKeycode(dbus.UInt32(42), False)
    print('ok', flush=True)
`;

/**
 * A real Mutter, `--headless --wayland --no-x11` with a virtual monitor, on a private session
 * bus; input made through Mutter's RemoteDesktop D-Bus API (a virtual keyboard in Mutter itself).
 */
export async function startMutter(): Promise<Compositor> {
  const dir = mkdtempSync(join(tmpdir(), 'crowdbake-mutter-'));
  const bus = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=1'], { stdio: ['ignore', 'pipe', 'ignore'], detached: true });
  const address = await new Promise<string>((ok) => createInterface({ input: bus.stdout! }).once('line', ok));
  const env = { XDG_RUNTIME_DIR: dir, DBUS_SESSION_BUS_ADDRESS: address };
  const mutter = spawn('mutter', ['--headless', '--wayland', '--no-x11', '--virtual-monitor', '640x480'], { env: { ...process.env, ...env, DISPLAY: '', WAYLAND_DISPLAY: '' }, stdio: 'ignore', detached: true });
  const display = await waitFor('Mutter\'s Wayland socket', () => readdirSync(dir).find((n) => /^wayland-\d+$/.test(n)), 30_000);
  await waitFor('Mutter\'s IdleMonitor and RemoteDesktop', () => {
    try {
      for (const [dest, path, method] of [['org.gnome.Mutter.IdleMonitor', '/org/gnome/Mutter/IdleMonitor/Core', 'org.gnome.Mutter.IdleMonitor.GetIdletime'],
        ['org.gnome.Mutter.RemoteDesktop', '/org/gnome/Mutter/RemoteDesktop', 'org.freedesktop.DBus.Peer.Ping']] as const) {
        execFileSync('gdbus', ['call', '--session', '--dest', dest, '--object-path', path, '--method', method], { env: { ...process.env, ...env }, stdio: 'ignore' });
      }
      return true;
    } catch { return undefined; }
  }, 30_000);
  const rd = spawn('/usr/bin/python3', ['-c', REMOTE_DESKTOP], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: rd.stdout! });
  let gone = false;
  let pending: ((e: Error) => void) | null = null;
  rd.once('exit', () => { gone = true; pending?.(new Error('the RemoteDesktop helper exited')); });
  const next = () => new Promise<string>((ok, fail) => {
    if (gone) { fail(new Error('the RemoteDesktop helper exited')); return; }
    pending = fail;
    lines.once('line', (l) => { pending = null; ok(l); });
  });
  if (await next() !== 'ready') throw new Error('RemoteDesktop session did not start');
  return {
    env: { ...env, WAYLAND_DISPLAY: display, XDG_CURRENT_DESKTOP: 'GNOME', XDG_SESSION_TYPE: 'wayland' },
    input: async () => { rd.stdin!.write('key\n'); if (await next() !== 'ok') throw new Error('RemoteDesktop input failed'); },
    close: () => { rd.kill(); killGroup(mutter); killGroup(bus); setTimeout(() => rmSync(dir, { recursive: true, force: true }), 500).unref(); },
  };
}
