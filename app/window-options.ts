/**
 * The dashboard window's options, kept free of electron so they can be tested: the web
 * preferences lock the page in (context isolation, sandbox, no Node) and navigation stays on
 * the dashboard's own origin.
 */

export interface SecureWebPreferences {
  preload: string;
  contextIsolation: true;
  sandbox: true;
  nodeIntegration: false;
  nodeIntegrationInWorker: false;
  nodeIntegrationInSubFrames: false;
  webSecurity: true;
  allowRunningInsecureContent: false;
  webviewTag: false;
  navigateOnDragDrop: false;
  spellcheck: false;
}

export function secureWebPreferences(preload: string): SecureWebPreferences {
  return {
    preload,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    navigateOnDragDrop: false,
    spellcheck: false,
  };
}

export interface DashboardWindowOptions {
  width: number;
  height: number;
  minWidth: number;
  minHeight: number;
  title: string;
  icon?: string;
  show: boolean;
  backgroundColor: string;
  autoHideMenuBar: boolean;
  webPreferences: SecureWebPreferences;
}

export function dashboardWindowOptions(opts: { preload: string; icon?: string }): DashboardWindowOptions {
  return {
    width: 1200,
    height: 860,
    minWidth: 640,
    minHeight: 480,
    title: 'Crowdbake',
    ...(opts.icon ? { icon: opts.icon } : {}),
    show: false, // shown on 'ready-to-show', so no white flash
    backgroundColor: '#f5f6f8',
    autoHideMenuBar: true,
    webPreferences: secureWebPreferences(opts.preload),
  };
}

function origin(url: string): string | null {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

/** The window may navigate only within the dashboard's origin. */
export function isDashboardUrl(target: string, dashboardUrl: string): boolean {
  const o = origin(target);
  return o !== null && o === origin(dashboardUrl);
}

/** Links that may be handed to the user's browser: http(s) only, never file: or custom schemes. */
export function isExternalUrl(url: string): boolean {
  return origin(url) !== null;
}
