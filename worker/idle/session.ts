/**
 * Which idle source fits this desktop session, decided from the environment alone (no probing),
 * so the decision can be tested and explained. `detectIdleSource` then probes the candidates in
 * this order and takes the first that works.
 *
 * The rule that matters: inside a Wayland session X11 is never a candidate, even when DISPLAY
 * is set. DISPLAY then points at XWayland, which sees only input sent to X11 windows, so a
 * volunteer typing in a native Wayland window would look idle.
 */
export type SessionKind = 'wayland' | 'x11' | 'no-graphical-session' | 'macos' | 'windows';
export type CandidateSource = 'mutter' | 'wayland' | 'x11' | 'logind' | 'macos' | 'windows';

export interface SessionPlan {
  session: SessionKind;
  /** XDG_CURRENT_DESKTOP, lower-cased, split on ':' (e.g. ['ubuntu', 'gnome']). */
  desktops: string[];
  /** Probed in this order; the first that works is used. */
  candidates: CandidateSource[];
  /** Why this session kind and order, for `crowdbake status`. */
  why: string;
}

const GNOME = ['gnome', 'gnome-classic', 'gnome-flashback', 'unity', 'budgie'];

export function planIdleSources(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): SessionPlan {
  const desktops = (env.XDG_CURRENT_DESKTOP ?? '').toLowerCase().split(':').map((s) => s.trim()).filter(Boolean);
  const desktop = desktops.length ? desktops.join(':') : 'unknown desktop';
  if (platform === 'darwin') return { session: 'macos', desktops, candidates: ['macos'], why: 'macOS' };
  if (platform === 'win32') return { session: 'windows', desktops, candidates: ['windows'], why: 'Windows' };
  const type = (env.XDG_SESSION_TYPE ?? '').toLowerCase();
  const wayland = type === 'wayland' || (type !== 'x11' && !!env.WAYLAND_DISPLAY);
  if (wayland) {
    const how = type === 'wayland' ? 'XDG_SESSION_TYPE=wayland' : `WAYLAND_DISPLAY=${env.WAYLAND_DISPLAY}`;
    const notX = env.DISPLAY ? `; not X11 although DISPLAY=${env.DISPLAY} is set (that is XWayland, blind to input in Wayland windows)` : '';
    const gnome = desktops.some((d) => GNOME.includes(d));
    return {
      session: 'wayland', desktops,
      candidates: gnome ? ['mutter', 'wayland', 'logind'] : ['wayland', 'mutter', 'logind'],
      why: `Wayland session (${how}, ${desktop})${notX}`,
    };
  }
  if (type === 'x11' || env.DISPLAY) {
    return { session: 'x11', desktops, candidates: ['x11', 'logind'], why: type === 'x11' ? `X11 session (XDG_SESSION_TYPE=x11, ${desktop})` : `X display ${env.DISPLAY}` };
  }
  return { session: 'no-graphical-session', desktops, candidates: ['x11', 'logind'], why: 'no graphical session (no XDG_SESSION_TYPE, WAYLAND_DISPLAY or DISPLAY)' };
}
