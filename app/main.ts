// The Crowdbake desktop app: a tray icon and one window showing the dashboard of a master
// that this app starts or connects to. Deliberately thin: the logic lives in the plain
// modules beside this file (tested without electron); the real tray behaviour comes later.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  app, BrowserWindow, ipcMain, Menu, nativeImage, session, shell, Tray,
  type IpcMainInvokeEvent, type MenuItemConstructorOptions,
} from 'electron';
import { IPC, type IpcArgs, type IpcChannel, type IpcResult } from './ipc-channels.js';
import { dashboardUrl, LaunchError, masterUrlFromOutput, parseLaunch, type Launch } from './launch-options.js';
import { trayPresentation, type TrayAction, type TrayState } from './tray-state.js';
import { dashboardWindowOptions, isDashboardUrl, isExternalUrl } from './window-options.js';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));
const PRELOAD = here('./preload.cjs');
const TRAY_ICONS = here('../../assets/tray/');
const APP_ICON = here('../../assets/icon.png');
const CLI = here('../../bin/crowdbake.js');

let win: BrowserWindow | null = null;
let tray: Tray | null = null;
let masterProcess: ChildProcess | null = null;
let quitting = false;
let paused = false;
let trayState: TrayState = 'offline';
let dashboard = '';

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => showWindow());
  app.on('before-quit', () => { quitting = true; masterProcess?.kill('SIGTERM'); });
  app.on('window-all-closed', () => { /* stays in the tray */ });
  app.whenReady().then(start).catch((e: unknown) => {
    console.error(`crowdbake app: ${(e as Error).message}`);
    app.exit(1);
  });
}

async function start(): Promise<void> {
  const argv = process.argv.slice(app.isPackaged ? 1 : 2);
  let launch: Launch;
  try {
    launch = parseLaunch(argv, process.env);
  } catch (e) {
    if (e instanceof LaunchError) throw new Error(`${e.message}\nusage: crowdbake-app [--master URL] | --start-master CONFIG_DIR [--data DIR] [--listen HOST:PORT]`);
    throw e;
  }
  const masterUrl = launch.mode === 'connect' ? launch.masterUrl : await startMaster(launch);
  dashboard = dashboardUrl(masterUrl);

  // Nothing on the dashboard needs camera, notifications or the like.
  session.defaultSession.setPermissionRequestHandler((_wc, _perm, callback) => callback(false));
  handle(IPC.info, () => ({ version: app.getVersion(), platform: process.platform, dashboardUrl: dashboard }));
  handle(IPC.openExternal, async (url) => {
    if (!isExternalUrl(url)) return false;
    await shell.openExternal(url);
    return true;
  });

  tray = new Tray(nativeImage.createFromPath(`${TRAY_ICONS}tray-offline.png`));
  tray.on('click', () => showWindow());
  renderTray(masterUrl);
  showWindow();
}

/** A typed ipcMain.handle that answers only the dashboard window. */
function handle<C extends IpcChannel>(channel: C, fn: (...args: IpcArgs<C>) => IpcResult<C> | Promise<IpcResult<C>>): void {
  ipcMain.handle(channel, (event: IpcMainInvokeEvent, ...args: unknown[]) => {
    const from = event.senderFrame?.url ?? '';
    if (!isDashboardUrl(from, dashboard)) throw new Error(`IPC ${channel} refused for ${from || 'an unknown frame'}`);
    return fn(...(args as IpcArgs<C>));
  });
}

function showWindow(): void {
  if (win) {
    if (win.isMinimized()) win.restore();
    win.show();
    win.focus();
    return;
  }
  if (!dashboard) return;
  const w = new BrowserWindow(dashboardWindowOptions({ preload: PRELOAD, icon: APP_ICON }));
  win = w;
  w.once('ready-to-show', () => w.show());
  w.on('close', (e) => {
    if (!quitting) { e.preventDefault(); w.hide(); } // closing keeps the app in the tray
  });
  w.on('closed', () => { win = null; });
  w.webContents.setWindowOpenHandler(({ url }) => {
    if (isExternalUrl(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  w.webContents.on('will-navigate', (e, url) => {
    if (!isDashboardUrl(url, dashboard)) {
      e.preventDefault();
      if (isExternalUrl(url)) void shell.openExternal(url);
    }
  });
  void w.loadURL(dashboard);
}

function renderTray(masterUrl: string): void {
  if (!tray) return;
  const p = trayPresentation(trayState, { master: masterUrl });
  tray.setImage(nativeImage.createFromPath(`${TRAY_ICONS}${p.icon}`));
  tray.setToolTip(p.tooltip);
  const items: MenuItemConstructorOptions[] = p.menu.map((item) => {
    switch (item.kind) {
      case 'separator': return { type: 'separator' };
      case 'status': return { label: item.label, enabled: false };
      case 'action': return { label: item.label, enabled: item.enabled, click: () => onTrayAction(item.action, masterUrl) };
    }
  });
  tray.setContextMenu(Menu.buildFromTemplate(items));
}

function onTrayAction(action: TrayAction, masterUrl: string): void {
  switch (action) {
    case 'open-dashboard': showWindow(); return;
    case 'quit': app.quit(); return;
    case 'pause':
    case 'resume':
      // The local worker arrives with the real tray behaviour; until then this only flips the icon.
      paused = action === 'pause';
      trayState = paused ? 'paused' : 'offline';
      renderTray(masterUrl);
      return;
  }
}

/** Starts `crowdbake master` as a child (Electron's own Node) and resolves with its URL. */
function startMaster(launch: Extract<Launch, { mode: 'start' }>): Promise<string> {
  const args = [CLI, 'master', '--config', launch.configDir, '--listen', launch.listen];
  if (launch.dataDir) args.push('--data', launch.dataDir);
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  masterProcess = child;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the master did not start within 30 s')), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      console.log(line);
      const url = masterUrlFromOutput(line);
      if (url) { clearTimeout(timer); resolve(url); }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      masterProcess = null;
      if (!quitting) reject(new Error(`the master exited (code ${code ?? 'none'})`));
    });
  });
}
