// The Crowdbake desktop app: a tray icon that follows this computer's worker agent, and one
// window showing the dashboard of a master that this app starts or connects to. Deliberately
// thin: the logic lives in the plain modules beside this file (tested without electron).
// The worker runs as its own process (started here with --worker-token, or already running
// for --worker-data); the tray talks to it through its control API (agent-client.ts) and
// feeds it powerMonitor's idle readings.
import { spawn, type ChildProcess } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  app, BrowserWindow, dialog, ipcMain, Menu, nativeImage, powerMonitor, session, shell, Tray,
  type IpcMainInvokeEvent, type MenuItemConstructorOptions,
} from 'electron';
import type { AgentStatus } from '../protocol/control-api.js';
import { AgentClient, applyTrayAction } from './agent-client.js';
import { IDLE_REPORT_EVERY_MS, idleReport } from './idle-report.js';
import { IPC, type IpcArgs, type IpcChannel, type IpcResult } from './ipc-channels.js';
import { dashboardUrl, LaunchError, masterUrlFromOutput, parseAgentLaunch, parseLaunch, workerArgs, workerEnv, type AgentLaunch, type Launch } from './launch-options.js';
import { trayPresentation, trayStateOfAgent, type TrayAction } from './tray-state.js';
import { dashboardWindowOptions, isDashboardUrl, isExternalUrl } from './window-options.js';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));
const PRELOAD = here('./preload.cjs');
const TRAY_ICONS = here('../../assets/tray/');
const APP_ICON = here('../../assets/icon.png');
const CLI = here('../../bin/crowdbake.js');

let win: BrowserWindow | null = null;
let tray: Tray | null = null;
let masterProcess: ChildProcess | null = null;
let workerProcess: ChildProcess | null = null;
let quitting = false;
let dashboard = '';
let runsMaster = false;
let agentDataDir = '';
let agentStatus: AgentStatus | null = null;
let suspended = false;

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => showWindow());
  app.on('before-quit', () => { quitting = true; masterProcess?.kill('SIGTERM'); workerProcess?.kill('SIGTERM'); });
  app.on('window-all-closed', () => { /* stays in the tray */ });
  app.whenReady().then(start).catch((e: unknown) => {
    console.error(`crowdbake app: ${(e as Error).message}`);
    app.exit(1);
  });
}

async function start(): Promise<void> {
  const argv = process.argv.slice(app.isPackaged ? 1 : 2);
  let launch: Launch;
  let agent: AgentLaunch;
  try {
    launch = parseLaunch(argv, process.env);
    agent = parseAgentLaunch(argv, process.env);
  } catch (e) {
    if (e instanceof LaunchError) throw new Error(`${e.message}\nusage: crowdbake-app [--master URL] | --start-master CONFIG_DIR [--data DIR] [--listen HOST:PORT]; [--worker-data DIR] [--worker-token TOKEN]`);
    throw e;
  }
  runsMaster = launch.mode === 'start';
  const masterUrl = launch.mode === 'connect' ? launch.masterUrl : await startMaster(launch);
  dashboard = dashboardUrl(masterUrl);
  agentDataDir = agent.dataDir ?? join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'crowdbake', 'worker');
  if (agent.token !== null) startWorkerProcess(masterUrl, { ...agent, token: agent.token });

  // Nothing on the dashboard needs camera, notifications or the like.
  session.defaultSession.setPermissionRequestHandler((_wc, _perm, callback) => callback(false));
  handle(IPC.info, () => ({ version: app.getVersion(), platform: process.platform, dashboardUrl: dashboard }));
  handle(IPC.openExternal, async (url) => {
    if (typeof url !== 'string' || !isExternalUrl(url)) return false;
    await shell.openExternal(url);
    return true;
  });

  tray = new Tray(nativeImage.createFromPath(`${TRAY_ICONS}tray-offline.png`));
  tray.on('click', () => showWindow());
  renderTray(masterUrl);
  followAgent(masterUrl);
  feedIdle();
  showWindow();
}

/** Polls the agent's status for the tray (a second; the agent may start or stop at any time). */
function followAgent(masterUrl: string): void {
  const tick = async () => {
    const client = AgentClient.open(agentDataDir);
    const next = typeof client === 'string' ? null : await client.status().catch(() => null);
    if (JSON.stringify(next) !== JSON.stringify(agentStatus)) { agentStatus = next; renderTray(masterUrl); }
    if (!quitting) setTimeout(() => void tick(), 1000);
  };
  void tick();
}

/** Reports powerMonitor's idle time, lock and battery to the agent, at once on input-ish events and every few seconds. */
function feedIdle(): void {
  const report = () => {
    const client = AgentClient.open(agentDataDir);
    if (typeof client === 'string') return;
    const reading = {
      idleSeconds: powerMonitor.getSystemIdleTime(), idleState: powerMonitor.getSystemIdleState(60),
      onBattery: powerMonitor.isOnBatteryPower(), suspended,
    };
    void client.reportIdle(idleReport(reading)).catch(() => undefined);
  };
  powerMonitor.on('suspend', () => { suspended = true; report(); });
  powerMonitor.on('resume', () => { suspended = false; report(); });
  powerMonitor.on('lock-screen', report);
  powerMonitor.on('unlock-screen', report);
  powerMonitor.on('user-did-become-active', report);
  powerMonitor.on('on-battery', report);
  powerMonitor.on('on-ac', report);
  setInterval(report, IDLE_REPORT_EVERY_MS).unref();
}

/** `crowdbake worker … --idle-source app` as its own process (Electron's Node), restarted if it dies. */
function startWorkerProcess(masterUrl: string, agent: AgentLaunch & { token: string }): void {
  const child = spawn(process.execPath, workerArgs(CLI, masterUrl, agent, agentDataDir), {
    env: { ...workerEnv(agent, process.env), ELECTRON_RUN_AS_NODE: '1' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  workerProcess = child;
  child.once('exit', (code) => {
    workerProcess = null;
    if (!quitting) {
      console.error(`crowdbake app: the worker exited (code ${code ?? 'none'}); starting it again in 5 s`);
      setTimeout(() => startWorkerProcess(masterUrl, agent), 5000);
    }
  });
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
  const p = trayPresentation(trayStateOfAgent(agentStatus), {
    master: masterUrl, builds: agentStatus?.current.map((c) => c.buildId) ?? [], hasAgent: agentStatus !== null,
    autostart: app.getLoginItemSettings().openAtLogin, runsMaster,
  });
  tray.setImage(nativeImage.createFromPath(`${TRAY_ICONS}${p.icon}`));
  tray.setToolTip(p.tooltip);
  const items: MenuItemConstructorOptions[] = p.menu.map((item) => {
    switch (item.kind) {
      case 'separator': return { type: 'separator' };
      case 'status': return { label: item.label, enabled: false };
      case 'action': return { label: item.label, enabled: item.enabled, click: () => onTrayAction(item.action, masterUrl) };
      case 'check': return { label: item.label, type: 'checkbox', checked: item.checked, click: () => onTrayAction(item.action, masterUrl) };
    }
  });
  tray.setContextMenu(Menu.buildFromTemplate(items));
}

function onTrayAction(action: TrayAction, masterUrl: string): void {
  const client = AgentClient.open(agentDataDir);
  switch (action) {
    case 'open-dashboard': showWindow(); return;
    case 'quit': app.quit(); return;
    case 'toggle-autostart':
      app.setLoginItemSettings({ openAtLogin: !app.getLoginItemSettings().openAtLogin, args: process.argv.slice(app.isPackaged ? 1 : 2) });
      renderTray(masterUrl);
      return;
    case 'start-master':
      void dialog.showOpenDialog({ title: 'Folder with crowdbake.yml and builders/', properties: ['openDirectory'] }).then((r) => {
        if (r.canceled || !r.filePaths[0]) return;
        app.relaunch({ args: [...process.argv.slice(1).filter((a) => !a.startsWith('--master')), '--start-master', r.filePaths[0]] });
        app.quit();
      });
      return;
    case 'open-volunteer':
      // The volunteer pages open in the browser, signed in once by a single-use link.
      if (typeof client !== 'string') void client.signInUrl().then((url) => shell.openExternal(url)).catch((e: Error) => console.error(`crowdbake app: ${e.message}`));
      return;
    case 'pause':
    case 'resume':
    case 'snooze':
      if (typeof client === 'string') return;
      void applyTrayAction(action, client).then((s) => { agentStatus = s; renderTray(masterUrl); })
        .catch((e: Error) => console.error(`crowdbake app: ${e.message}`));
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
