import { LogindIdleSource } from './logind-idle.js';
import { MacosIdleSource } from './macos-idle.js';
import { MutterIdleSource } from './mutter-idle.js';
import { NoIdleSource, ReportedIdleSource, UnavailableIdleSource, type IdleSource } from './idle-source.js';
import { planIdleSources, type CandidateSource } from './session.js';
import { WaylandIdleSource } from './wayland-idle.js';
import { WindowsIdleSource } from './windows-idle.js';
import { X11IdleSource } from './x11-idle.js';

export const IDLE_SOURCE_CHOICES = ['auto', 'mutter', 'wayland', 'x11', 'logind', 'macos', 'windows', 'app', 'none'] as const;
export type IdleSourceChoice = typeof IDLE_SOURCE_CHOICES[number];

type Tried = { ok: true; source: IdleSource } | { ok: false; reason: string };

/** Starts one source; `why` is what `crowdbake status` shows if it is the one used. */
async function tryOne(kind: CandidateSource, env: NodeJS.ProcessEnv, why: (detail: string) => string): Promise<Tried> {
  const session = env.XDG_SESSION_ID || 'auto';
  switch (kind) {
    case 'mutter': return MutterIdleSource.start(env, why('org.gnome.Mutter.IdleMonitor on the session bus (user-active watch: input seen at once)'));
    case 'wayland': return WaylandIdleSource.start(env, why(`the compositor's Wayland idle protocol (ext-idle-notify-v1 or org_kde_kwin_idle) on ${env.WAYLAND_DISPLAY}, via swayidle; input seen at once, idle counted in whole seconds`));
    case 'x11': {
      const p = await X11IdleSource.probe(env.DISPLAY);
      return p.ok ? { ok: true, source: new X11IdleSource(env.DISPLAY!, why(`X display ${env.DISPLAY} answers XScreenSaver queries`)) } : p;
    }
    case 'logind': {
      const p = await LogindIdleSource.probe(session);
      return p.ok ? { ok: true, source: new LogindIdleSource(session, why(`logind session ${session} answers (coarse: IdleHint, polled)`)) } : p;
    }
    case 'macos': {
      const p = await MacosIdleSource.probe();
      return p.ok ? { ok: true, source: new MacosIdleSource(why('HIDIdleTime of IOHIDSystem (polled)')) } : p;
    }
    case 'windows': return WindowsIdleSource.start(why('GetLastInputInfo, read every 100 ms'));
  }
}

/**
 * Picks the idle source: the one asked for (failing with the reason if it cannot work), or with
 * `auto` the first that works of the candidates for this session (`planIdleSources`: in a
 * Wayland session Mutter or the Wayland idle protocols, then logind — never X11; in an X11
 * session X11, then logind) — and says which and why.
 */
export async function detectIdleSource(choice: IdleSourceChoice, env: NodeJS.ProcessEnv = process.env): Promise<IdleSource> {
  switch (choice) {
    case 'app':
      return new ReportedIdleSource();
    case 'none':
      return new NoIdleSource('asked for: the machine counts as always idle');
    case 'auto':
      return auto(env);
    default: {
      const r = await tryOne(choice, env, (d) => `asked for; ${d}`);
      if (!r.ok) throw new Error(`--idle-source ${choice}: ${r.reason}`);
      return r.source;
    }
  }
}

async function auto(env: NodeJS.ProcessEnv): Promise<IdleSource> {
  const plan = planIdleSources(env);
  const failed: string[] = [];
  for (const kind of plan.candidates) {
    const before = failed.length ? `; ${failed.join('; ')}` : '';
    const r = await tryOne(kind, env, (d) => plan.session === 'no-graphical-session' && kind === 'logind'
      ? `auto: no usable X display (${failedX(failed)}); ${d}`
      : `auto: ${plan.why}${before}; using ${kind}: ${d}`);
    if (r.ok) return r.source;
    failed.push(`${kind}: ${r.reason}`);
  }
  if (plan.session === 'wayland' || (env.XDG_SESSION_TYPE ?? '').toLowerCase() === 'x11') {
    return new UnavailableIdleSource(`auto: ${plan.why}, but no idle source works (${failed.join('; ')}); builds wait, counted as in use — install what is named above, or pass --idle-source none to build regardless`);
  }
  return new NoIdleSource(plan.session === 'no-graphical-session'
    ? `auto: no usable X display (${failedX(failed)}) and no logind session (${failed.find((f) => f.startsWith('logind: '))?.slice(8) ?? '?'}); the machine counts as always idle`
    : `auto: ${plan.why}, no idle source works (${failed.join('; ')}); the machine counts as always idle`);
}

function failedX(failed: string[]): string {
  return failed.find((f) => f.startsWith('x11: '))?.slice(5) ?? '?';
}
