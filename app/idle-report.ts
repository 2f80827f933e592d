import { IdleReportSchema, type IdleReport } from '../protocol/control-api.js';
import { planIdleSources } from '../worker/idle/session.js';

/** What Electron's powerMonitor says (getSystemIdleTime, getSystemIdleState, isOnBatteryPower, suspend events). */
export interface PowerReading {
  idleSeconds: number;
  idleState: 'active' | 'idle' | 'locked' | 'unknown';
  onBattery: boolean;
  suspended: boolean;
}

/** The agent's idle report from a powerMonitor reading; throws on a reading that makes no sense. */
export function idleReport(r: PowerReading): IdleReport {
  return IdleReportSchema.parse({
    idleMs: Math.round(r.idleSeconds * 1000),
    locked: r.idleState === 'locked',
    onBattery: r.onBattery,
    suspended: r.suspended,
  });
}

/** How often the app reports while nothing happens (input is also reported as it comes). */
export const IDLE_REPORT_EVERY_MS = 2000;

/**
 * The idle source the app's worker uses. powerMonitor is reliable on macOS, Windows and X11
 * sessions; in a Linux Wayland session Electron reads XWayland's idle counter, which does not
 * see input in Wayland windows — there the agent's own source (Mutter, the Wayland idle
 * protocols) is used (`auto`), and the app's idle reports are declined by the agent.
 */
export function appIdleSource(platform: NodeJS.Platform, env: NodeJS.ProcessEnv): 'app' | 'auto' {
  return planIdleSources(env, platform).session === 'wayland' ? 'auto' : 'app';
}
