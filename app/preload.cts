// The dashboard window's preload script. The window is sandboxed, so this runs as CommonJS
// (hence .cts → preload.cjs) and may require nothing but 'electron'; the channel map comes
// in as types only.
import { contextBridge, ipcRenderer } from 'electron';
import type { CrowdbakeBridge, IpcArgs, IpcChannel, IpcResult } from './ipc-channels.js';

function invoke<C extends IpcChannel>(channel: C, ...args: IpcArgs<C>): Promise<IpcResult<C>> {
  return ipcRenderer.invoke(channel, ...args) as Promise<IpcResult<C>>;
}

const bridge: CrowdbakeBridge = {
  info: () => invoke('app:info'),
  openExternal: (url: string) => invoke('app:open-external', url),
};

// Must match BRIDGE_GLOBAL in ipc-channels.ts (checked by window-options.test.ts).
contextBridge.exposeInMainWorld('crowdbake', bridge);
