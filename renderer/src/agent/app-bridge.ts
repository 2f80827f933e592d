import { BRIDGE_GLOBAL, type CrowdbakeBridge, type IpcArg, type IpcChannel, type IpcValue } from '../../../protocol/app-ipc.js';

/**
 * The desktop app's bridge (`window.crowdbake`, from the preload), or null in a browser
 * (`crowdbake ui`). In the app, every call to the agent goes through it: the page has no
 * network of its own and holds no secret.
 */
export function appBridge(): CrowdbakeBridge | null {
  const b = (globalThis as Record<string, unknown>)[BRIDGE_GLOBAL] as CrowdbakeBridge | undefined;
  return b && typeof b.invoke === 'function' ? b : null;
}

/** The page runs in the desktop app (its index.html is marked so, and the bridge is there). */
export function inApp(): boolean {
  return document.querySelector('meta[name="crowdbake-mode"]')?.getAttribute('content') === 'app' && appBridge() !== null;
}

export class BridgeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BridgeError';
  }
}

/** One call through the bridge; throws the main process's sentence on refusal. */
export async function callApp<C extends IpcChannel>(channel: C, ...arg: IpcArg<C> extends undefined ? [] : [IpcArg<C>]): Promise<IpcValue<C>> {
  const b = appBridge();
  if (!b) throw new BridgeError('this page is not running in the desktop app');
  const answer = await b.invoke(channel, ...arg);
  if (!answer.ok) throw new BridgeError(answer.error);
  return answer.value as IpcValue<C>;
}
