/**
 * What the tray shows for the volunteer's worker: icon, tooltip and menu, from its state.
 * Plain data (no electron): desktop.ts turns it into a Tray and a Menu.
 */

/** The worker states of the dashboard (idle/busy/frozen/offline), the volunteer's own pause, and "needs attention". */
export const TRAY_STATES = ['idle', 'busy', 'frozen', 'paused', 'offline', 'attention'] as const;
export type TrayState = (typeof TRAY_STATES)[number];

export type TrayAction = 'open-window' | 'open-dashboard' | 'pause' | 'resume' | 'snooze' | 'finish-then-pause'
  | 'toggle-autostart' | 'toggle-notifications' | 'start-master' | 'quit';

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
  /** Desktop notifications are on. */
  notifications?: boolean;
  /** This app runs a master (its dashboard is one more page); otherwise it offers to start one. */
  runsMaster?: boolean;
  /** What needs the volunteer (state `attention`): one sentence each. */
  attention?: readonly string[];
  /** "Finish the current build, then pause" is pending. */
  pausingAfterCurrent?: boolean;
}

/** The tray state from the local agent's status (null: no agent answers) and what needs the volunteer. */
export function trayStateOfAgent(status: { state: Exclude<TrayState, 'attention'> } | null, attention: readonly string[] = []): TrayState {
  if (attention.length) return 'attention';
  return status ? status.state : 'offline';
}

/** From the worker's view (null when the master does not know it) and the local pause switch. */
export function trayStateOf(worker: { connected: boolean; state: 'idle' | 'busy' | 'frozen' | 'offline' } | null, paused: boolean): TrayState {
  if (!worker || !worker.connected || worker.state === 'offline') return 'offline';
  if (paused) return 'paused';
  return worker.state;
}

function describe(state: TrayState, d: TrayDetail): string {
  const builds = d.builds ?? [];
  const list = builds.map((b) => `#${b}`).join(', ');
  switch (state) {
    case 'idle': return 'Idle — ready for builds';
    case 'busy': return builds.length ? `Busy — running build ${list}` : 'Busy — running a build';
    case 'frozen': return builds.length ? `Frozen — build ${list} is on hold while you use this computer` : 'Frozen — builds are on hold';
    case 'paused': return 'Paused — takes no new builds';
    case 'offline': return 'Offline — not connected to the master';
    case 'attention': return `Needs your attention — ${d.attention?.[0] ?? 'see the window'}`;
  }
}

export function trayPresentation(state: TrayState, detail: TrayDetail = {}): TrayPresentation {
  const status = describe(state, detail);
  const tooltip = `Crowdbake: ${status}${detail.master ? `\n${detail.master}` : ''}`;
  const online = state !== 'offline';
  const paused = state === 'paused';
  const menu: TrayMenuItem[] = [
    { kind: 'status', label: status },
    { kind: 'separator' },
    { kind: 'action', action: 'open-window', label: 'Open Crowdbake', enabled: true },
    ...(detail.runsMaster ? [{ kind: 'action' as const, action: 'open-dashboard' as const, label: 'Open the master\'s dashboard', enabled: true }] : []),
    paused
      ? { kind: 'action', action: 'resume', label: 'Resume builds', enabled: true }
      : { kind: 'action', action: 'pause', label: 'Pause builds', enabled: online },
    ...(!paused ? [{ kind: 'action' as const, action: 'snooze' as const, label: 'Snooze for 1 hour', enabled: online }] : []),
    ...(state === 'busy' || state === 'frozen' ? [{ kind: 'action' as const, action: 'finish-then-pause' as const, label: detail.pausingAfterCurrent ? 'Pausing after the current build…' : 'Finish the current build, then pause', enabled: !detail.pausingAfterCurrent }] : []),
    { kind: 'separator' },
    ...(detail.autostart !== undefined ? [{ kind: 'check' as const, action: 'toggle-autostart' as const, label: 'Start at login', checked: detail.autostart }] : []),
    ...(detail.notifications !== undefined ? [{ kind: 'check' as const, action: 'toggle-notifications' as const, label: 'Notifications', checked: detail.notifications }] : []),
    ...(detail.runsMaster === false ? [{ kind: 'action' as const, action: 'start-master' as const, label: 'Run a master on this computer…', enabled: true }] : []),
    { kind: 'action', action: 'quit', label: 'Quit Crowdbake', enabled: true },
  ];
  return { state, icon: `tray-${state}.png`, tooltip, menu };
}
