// The window's preload script. The window is sandboxed, so this runs as CommonJS (hence
// .cts → preload.cjs) and may require nothing but 'electron'; the channel map comes in as
// types only (protocol/app-ipc.ts), and main checks every call against its schemas.
import { contextBridge, ipcRenderer } from 'electron';
import type { CrowdbakeBridge } from '../protocol/app-ipc.js';

const bridge: CrowdbakeBridge = {
  // Must match IPC_INVOKE in protocol/app-ipc.ts (checked by preload.test.ts).
  invoke: ((channel: string, arg?: unknown) => ipcRenderer.invoke('crowdbake:invoke', channel, arg)) as CrowdbakeBridge['invoke'],
};

// Must match BRIDGE_GLOBAL in protocol/app-ipc.ts (checked by preload.test.ts).
contextBridge.exposeInMainWorld('crowdbake', bridge);
