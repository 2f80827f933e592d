/**
 * The window ↔ main IPC map lives in protocol/app-ipc.ts (the renderer uses it too); this
 * re-exports it for app/.
 */
export { BRIDGE_GLOBAL, IPC_CHANNELS, IPC_INVOKE, type CrowdbakeBridge, type IpcAnswer, type IpcArg, type IpcChannel, type IpcValue } from '../protocol/app-ipc.js';
