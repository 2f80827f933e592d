/**
 * What the tray shows for the volunteer's worker: icon, tooltip and menu, from its state.
 * Plain data (no electron): main.ts turns it into a Tray and a Menu.
 */

/** The worker states of the dashboard (idle/busy/frozen/offline) plus the volunteer's own pause. */
export const TRAY_STATES = ['idle', 'busy', 'frozen', 'paused', 'offline'] as const;
export type TrayState = (typeof TRAY_STATES)[number];

export type TrayAction = 'open-dashboard' | 'pause' | 'resume' | 'quit';

export type TrayMenuItem =
  | { kind: 'status'; label: string }
  | { kind: 'action'; action: TrayAction; label: string; enabled: boolean }
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
  const menu: TrayMenuItem[] = [
    { kind: 'status', label: status },
    { kind: 'separator' },
    { kind: 'action', action: 'open-dashboard', label: 'Open dashboard', enabled: true },
    state === 'paused'
      ? { kind: 'action', action: 'resume', label: 'Resume builds', enabled: true }
      : { kind: 'action', action: 'pause', label: 'Pause builds', enabled: state !== 'offline' },
    { kind: 'separator' },
    { kind: 'action', action: 'quit', label: 'Quit Crowdbake', enabled: true },
  ];
  return { state, icon: `tray-${state}.png`, tooltip, menu };
}
