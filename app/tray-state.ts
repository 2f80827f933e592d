/**
 * What the tray shows for the volunteer's worker: icon, tooltip and menu, from its state.
 * Plain data (no electron): main.ts turns it into a Tray and a Menu.
 */

/** The worker states of the dashboard (idle/busy/frozen/offline) plus the volunteer's own pause. */
export const TRAY_STATES = ['idle', 'busy', 'frozen', 'paused', 'offline'] as const;
export type TrayState = (typeof TRAY_STATES)[number];

export type TrayAction = 'open-dashboard' | 'open-volunteer' | 'pause' | 'resume' | 'snooze' | 'toggle-autostart' | 'start-master' | 'quit';

export type TrayMenuItem =
  | { kind: 'status'; label: string }
  | { kind: 'action'; action: TrayAction; label: string; enabled: boolean }
  | { kind: 'check'; action: TrayAction; label: string; checked: boolean }
  | { kind: 'separator' };

export interface TrayPresentation {
  state: TrayState;
  /** File name in assets/tray/: 16 px; Electron picks the `@2x` (32 px) file beside it on HiDPI. */
  icon: string;
  tooltip: string;
  menu: TrayMenuItem[];
}

export interface TrayDetail {
  /** Builds the worker runs now. */
  builds?: readonly number[];
  /** The master it is connected to (shown in the tooltip). */
  master?: string;
  /** The app starts at login. */
  autostart?: boolean;
  /** This app runs a master (its dashboard is local); otherwise it offers to start one. */
  runsMaster?: boolean;
  /** A local agent answers (the volunteer pages and pause/snooze work). */
  hasAgent?: boolean;
}

/** The tray state from the local agent's status (null: no agent answers). */
export function trayStateOfAgent(status: { state: TrayState } | null): TrayState {
  return status ? status.state : 'offline';
}

/** From the worker's view (null when the master does not know it) and the local pause switch. */
export function trayStateOf(worker: { connected: boolean; state: 'idle' | 'busy' | 'frozen' | 'offline' } | null, paused: boolean): TrayState {
  if (!worker || !worker.connected || worker.state === 'offline') return 'offline';
  if (paused) return 'paused';
  return worker.state;
}

function describe(state: TrayState, builds: readonly number[]): string {
  const list = builds.map((b) => `#${b}`).join(', ');
  switch (state) {
    case 'idle': return 'Idle — ready for builds';
    case 'busy': return builds.length ? `Busy — running build ${list}` : 'Busy — running a build';
    case 'frozen': return builds.length ? `Frozen — build ${list} is on hold while you use this computer` : 'Frozen — builds are on hold';
    case 'paused': return 'Paused — takes no new builds';
    case 'offline': return 'Offline — not connected to the master';
  }
}

export function trayPresentation(state: TrayState, detail: TrayDetail = {}): TrayPresentation {
  const status = describe(state, detail.builds ?? []);
  const tooltip = `Crowdbake: ${status}${detail.master ? `\n${detail.master}` : ''}`;
  const agent = detail.hasAgent ?? state !== 'offline';
  const menu: TrayMenuItem[] = [
    { kind: 'status', label: status },
    { kind: 'separator' },
    { kind: 'action', action: 'open-dashboard', label: 'Open dashboard', enabled: true },
    ...(detail.hasAgent !== undefined ? [{ kind: 'action' as const, action: 'open-volunteer' as const, label: 'Open this computer\'s page', enabled: agent }] : []),
    state === 'paused'
      ? { kind: 'action', action: 'resume', label: 'Resume builds', enabled: true }
      : { kind: 'action', action: 'pause', label: 'Pause builds', enabled: state !== 'offline' },
    ...(state !== 'paused' ? [{ kind: 'action' as const, action: 'snooze' as const, label: 'Snooze for 1 hour', enabled: state !== 'offline' }] : []),
    { kind: 'separator' },
    ...(detail.autostart !== undefined ? [{ kind: 'check' as const, action: 'toggle-autostart' as const, label: 'Start at login', checked: detail.autostart }] : []),
    ...(detail.runsMaster === false ? [{ kind: 'action' as const, action: 'start-master' as const, label: 'Run a master on this computer…', enabled: true }] : []),
    { kind: 'action', action: 'quit', label: 'Quit Crowdbake', enabled: true },
  ];
  return { state, icon: `tray-${state}.png`, tooltip, menu };
}
