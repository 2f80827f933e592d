import { LogindIdleSource } from './logind-idle.js';
import { NoIdleSource, ReportedIdleSource, type IdleSource } from './idle-source.js';
import { X11IdleSource } from './x11-idle.js';

export type IdleSourceChoice = 'auto' | 'x11' | 'logind' | 'app' | 'none';

/**
 * Picks the idle source: the one asked for (failing clearly if it does not work), or with
 * `auto` the first that works of X11, logind, none — and says why.
 */
export async function detectIdleSource(choice: IdleSourceChoice, env: NodeJS.ProcessEnv = process.env): Promise<IdleSource> {
  const session = env.XDG_SESSION_ID || 'auto';
  switch (choice) {
    case 'x11': {
      const p = await X11IdleSource.probe(env.DISPLAY);
      if (!p.ok) throw new Error(`--idle-source x11: ${p.reason}`);
      return new X11IdleSource(env.DISPLAY!, `asked for; X display ${env.DISPLAY}`);
    }
    case 'logind': {
      const p = await LogindIdleSource.probe(session);
      if (!p.ok) throw new Error(`--idle-source logind: ${p.reason}`);
      return new LogindIdleSource(session, `asked for; logind session ${session}`);
    }
    case 'app':
      return new ReportedIdleSource();
    case 'none':
      return new NoIdleSource('asked for: the machine counts as always idle');
    case 'auto': {
      const x = await X11IdleSource.probe(env.DISPLAY);
      if (x.ok) return new X11IdleSource(env.DISPLAY!, `auto: X display ${env.DISPLAY} answers XScreenSaver queries`);
      const l = await LogindIdleSource.probe(session);
      if (l.ok) return new LogindIdleSource(session, `auto: no usable X display (${x.reason}); logind session ${session} answers`);
      return new NoIdleSource(`auto: no usable X display (${x.reason}) and no logind session (${l.reason}); the machine counts as always idle`);
    }
  }
}
