/**
 * Every IPC channel between the dashboard window (through preload) and the main process, in
 * one typed map. The preload script cannot load this file at run time (sandboxed preloads may
 * only require 'electron'), so it imports the types alone: a channel name it uses that is not
 * in this map fails to compile.
 */

export interface AppInfo {
  /** The desktop app's version (package.json). */
  version: string;
  platform: string;
  /** The dashboard this window shows. */
  dashboardUrl: string;
}

/** `ipcRenderer.invoke(channel, ...args)` → `ipcMain.handle(channel)` answers `result`. */
export interface IpcInvokeChannels {
  'app:info': { args: []; result: AppInfo };
  /** Opens an http(s) link in the user's browser; false when the URL was refused. */
  'app:open-external': { args: [url: string]; result: boolean };
}

export type IpcChannel = keyof IpcInvokeChannels;
export type IpcArgs<C extends IpcChannel> = IpcInvokeChannels[C]['args'];
export type IpcResult<C extends IpcChannel> = IpcInvokeChannels[C]['result'];

export const IPC = {
  info: 'app:info',
  openExternal: 'app:open-external',
} as const satisfies Record<string, IpcChannel>;

/** What preload exposes to the dashboard as `window.crowdbake`: one small API, nothing else. */
export interface CrowdbakeBridge {
  info(): Promise<AppInfo>;
  openExternal(url: string): Promise<boolean>;
}

/** The name of the global the bridge is exposed as. */
export const BRIDGE_GLOBAL = 'crowdbake';
